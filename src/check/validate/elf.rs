//! Is a file a complete ELF shared library? `dlopen` maps a truncated library and then faults
//! (SIGBUS) touching the missing pages, so the runtime library is checked before it is
//! loaded: the ELF header, every loadable segment and the section table must lie inside the
//! file.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

const PT_LOAD: u64 = 1;
/// A real library has a few dozen program headers.
const MAX_PHNUM: u64 = 4096;

/// Ok when the file is a complete ELF object (or not ELF at all on platforms without ELF);
/// Err says what is wrong.
pub fn check(path: &Path) -> Result<(), String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let len = f
        .metadata()
        .map_err(|e| format!("cannot read it: {e}"))?
        .len();
    check_reader(&mut f, len)
}

pub fn check_reader<R: Read + Seek>(f: &mut R, len: u64) -> Result<(), String> {
    let mut h = [0u8; 64];
    let n = read_up_to(f, &mut h)?;
    if n < 4 || &h[..4] != b"\x7fELF" {
        if cfg!(any(target_os = "macos", target_os = "windows")) {
            return Ok(()); // Mach-O / PE: left to the loader
        }
        return Err(if len == 0 {
            "the file is empty".into()
        } else {
            "it is not a shared library (no ELF header)".into()
        });
    }
    let is64 = match h[4] {
        1 => false,
        2 => true,
        c => return Err(format!("unknown ELF class {c}")),
    };
    let le = match h[5] {
        1 => true,
        2 => false,
        d => return Err(format!("unknown ELF data encoding {d}")),
    };
    let need = if is64 { 64 } else { 52 };
    if n < need {
        return Err(format!("the ELF header is cut off ({len} bytes)"));
    }
    let u16_at = |b: &[u8], o: usize| -> u64 {
        let x = [b[o], b[o + 1]];
        (if le {
            u16::from_le_bytes(x)
        } else {
            u16::from_be_bytes(x)
        }) as u64
    };
    let u32_at = |b: &[u8], o: usize| -> u64 {
        let x = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        (if le {
            u32::from_le_bytes(x)
        } else {
            u32::from_be_bytes(x)
        }) as u64
    };
    let u64_at = |b: &[u8], o: usize| -> u64 {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[o..o + 8]);
        if le {
            u64::from_le_bytes(x)
        } else {
            u64::from_be_bytes(x)
        }
    };
    let (phoff, shoff, phentsize, phnum, shentsize, shnum) = if is64 {
        (
            u64_at(&h, 0x20),
            u64_at(&h, 0x28),
            u16_at(&h, 0x36),
            u16_at(&h, 0x38),
            u16_at(&h, 0x3a),
            u16_at(&h, 0x3c),
        )
    } else {
        (
            u32_at(&h, 0x1c),
            u32_at(&h, 0x20),
            u16_at(&h, 0x2a),
            u16_at(&h, 0x2c),
            u16_at(&h, 0x2e),
            u16_at(&h, 0x30),
        )
    };
    let past = |off: u64, size: u64| off.checked_add(size).is_none_or(|end| end > len);
    if shoff != 0 && past(shoff, shentsize.saturating_mul(shnum)) {
        return Err(format!(
            "it is truncated: its section table ends past the end of the file ({len} bytes)"
        ));
    }
    let min_ph = if is64 { 56 } else { 32 };
    if phnum == 0 || phnum > MAX_PHNUM || phentsize < min_ph {
        return Err("it has no usable program headers".into());
    }
    if past(phoff, phentsize * phnum) {
        return Err(format!(
            "it is truncated: its program headers end past the end of the file ({len} bytes)"
        ));
    }
    let mut ph = vec![0u8; (phentsize * phnum) as usize];
    f.seek(SeekFrom::Start(phoff))
        .and_then(|_| f.read_exact(&mut ph))
        .map_err(|e| format!("cannot read its program headers: {e}"))?;
    for i in 0..phnum as usize {
        let e = &ph[i * phentsize as usize..];
        if u32_at(e, 0) != PT_LOAD {
            continue;
        }
        let (off, filesz) = if is64 {
            (u64_at(e, 8), u64_at(e, 32))
        } else {
            (u32_at(e, 4), u32_at(e, 16))
        };
        if past(off, filesz) {
            return Err(format!(
                "it is truncated: a loadable segment ends at byte {}, the file has {len}",
                off.saturating_add(filesz)
            ));
        }
    }
    Ok(())
}

fn read_up_to<R: Read>(f: &mut R, buf: &mut [u8]) -> Result<usize, String> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read it: {e}")),
        }
    }
    Ok(n)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn check_bytes(b: &[u8]) -> Result<(), String> {
        check_reader(&mut Cursor::new(b), b.len() as u64)
    }

    /// A shared library every Linux test machine has: the one of our own process.
    fn a_library() -> Vec<u8> {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let lib = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| p.contains("libc.so") || p.contains("libc-"))
            .expect("libc is mapped");
        std::fs::read(lib).unwrap()
    }

    #[test]
    fn complete_and_truncated_libraries() {
        let lib = a_library();
        assert_eq!(check_bytes(&lib), Ok(()));
        for cut in [
            0,
            3,
            20,
            63,
            64,
            1000,
            lib.len() / 3,
            lib.len() / 2,
            lib.len() - 1,
        ] {
            let e = check_bytes(&lib[..cut]).unwrap_err();
            assert!(
                e.contains("truncated")
                    || e.contains("empty")
                    || e.contains("cut off")
                    || e.contains("ELF"),
                "{cut}: {e}"
            );
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert!(check_bytes(b"").unwrap_err().contains("empty"));
        assert!(check_bytes(b"hello world").unwrap_err().contains("no ELF"));
        let mut rng = crate::testutil::XorShift(7);
        for _ in 0..500 {
            let mut b = rng.bytes(200);
            b[..4].copy_from_slice(b"\x7fELF");
            b[4] = 2;
            b[5] = 1;
            let _ = check_bytes(&b);
        }
    }
}
