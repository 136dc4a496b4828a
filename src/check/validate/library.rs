//! Where ONNX Runtime comes from: `--ort-lib`, `ORT_DYLIB_PATH`, or the `onnxruntime` Python
//! package of the active environment, of the Python environment mlart was installed into
//! (`pip install mlart-cli[onnx]`), or of `python3`; and the version a library reports.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// How to get the runtime, for every "not found / cannot load" error.
pub(super) const HOW: &str = "Install ONNX Runtime with `pip install onnxruntime==1.31.1` or `pip install 'mlart-cli[onnx]'` (mlart uses the library of the `onnxruntime` Python package in $VIRTUAL_ENV, else in the Python environment mlart is installed in, else of the `python3` on PATH), or give the library file with --ort-lib PATH or ORT_DYLIB_PATH=PATH (libonnxruntime.so.1.* on Linux, libonnxruntime.*.dylib on macOS)";

/// The library to load and how it was found.
#[derive(Clone, Debug)]
pub struct LibraryChoice {
    pub path: PathBuf,
    /// `--ort-lib`, `ORT_DYLIB_PATH`, or the Python package's directory.
    pub from: String,
}

/// Find the ONNX Runtime library: `--ort-lib`, then `ORT_DYLIB_PATH`, then the `onnxruntime`
/// package in `$VIRTUAL_ENV`, then the one in the Python environment this executable was
/// installed into (the pip wheel), then the one `python3` on PATH imports.
pub fn find_library(explicit: Option<&Path>) -> Result<LibraryChoice> {
    if let Some(p) = explicit {
        return existing(p, "--ort-lib");
    }
    if let Some(v) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        return existing(Path::new(&v), "ORT_DYLIB_PATH");
    }
    let mut looked = Vec::new();
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
        let venv = PathBuf::from(venv);
        for sp in site_packages(&venv) {
            let capi = sp.join("onnxruntime").join("capi");
            if let Some(lib) = library_in(&capi) {
                return Ok(LibraryChoice {
                    path: lib,
                    from: format!(
                        "the onnxruntime package of $VIRTUAL_ENV ({})",
                        venv.display()
                    ),
                });
            }
        }
        looked.push(format!("$VIRTUAL_ENV {}", venv.display()));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some((lib, prefix)) = beside_executable(&exe) {
            return Ok(LibraryChoice {
                path: lib,
                from: format!(
                    "the onnxruntime package of the Python environment mlart is installed in ({})",
                    prefix.display()
                ),
            });
        }
    }
    match python_package_dir() {
        Some(dir) => {
            if let Some(lib) = library_in(&dir.join("capi")) {
                return Ok(LibraryChoice {
                    path: lib,
                    from: format!("the onnxruntime package of python3 ({})", dir.display()),
                });
            }
            looked.push(format!("{} (no libonnxruntime in capi/)", dir.display()));
        }
        None => looked.push("python3 on PATH (no onnxruntime package)".into()),
    }
    Err(Error::input(format!(
        "ONNX Runtime was not found: no --ort-lib, no ORT_DYLIB_PATH, and no onnxruntime Python package (looked at {}). {HOW}",
        looked.join("; ")
    )))
}

/// [`find_library`], and the file checked to be a whole shared library: `dlopen` faults
/// (SIGBUS) on a truncated one.
pub fn checked_library(explicit: Option<&Path>) -> Result<LibraryChoice> {
    let choice = find_library(explicit)?;
    super::elf::check(&choice.path).map_err(|why| {
        Error::input(format!(
            "cannot load ONNX Runtime from {} (from {}): {why}. {HOW}",
            choice.path.display(),
            choice.from
        ))
    })?;
    Ok(choice)
}

fn existing(p: &Path, from: &str) -> Result<LibraryChoice> {
    if !p.is_file() {
        return Err(Error::input(format!(
            "{from} {}: no such file. {HOW}",
            p.display()
        )));
    }
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    Ok(LibraryChoice {
        path: abs,
        from: from.to_string(),
    })
}

/// The `onnxruntime` library of the Python environment an executable was installed into by
/// pip: `<prefix>/bin/mlart` (`<prefix>\Scripts\mlart.exe` on Windows) next to
/// `<prefix>/lib/python3.*/site-packages/onnxruntime/capi/` — a venv, `pip install --user`
/// (`~/.local`) or a system prefix alike. The library and the prefix.
fn beside_executable(exe: &Path) -> Option<(PathBuf, PathBuf)> {
    // a symlink to the binary (`ln -s <venv>/bin/mlart ~/bin/`) still finds its environment
    let exe = std::fs::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
    let prefix = exe.parent()?.parent()?;
    site_packages(prefix).into_iter().find_map(|sp| {
        library_in(&sp.join("onnxruntime").join("capi")).map(|lib| (lib, prefix.to_path_buf()))
    })
}

fn site_packages(venv: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(venv.join("lib")) {
        let mut names: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
            // Debian's system Python installs into dist-packages
            .flat_map(|e| {
                [
                    e.path().join("site-packages"),
                    e.path().join("dist-packages"),
                ]
            })
            .collect();
        names.sort();
        out.extend(names);
    }
    out.push(venv.join("Lib").join("site-packages"));
    out
}

/// The runtime library in the package's `capi/` directory. The wheel ships
/// `libonnxruntime.so.1.31.1` (no plain `libonnxruntime.so`).
fn library_in(capi: &Path) -> Option<PathBuf> {
    let rd = std::fs::read_dir(capi).ok()?;
    let mut libs: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            !n.contains("providers")
                && (n.starts_with("libonnxruntime.so")
                    || (n.starts_with("libonnxruntime.") && n.ends_with(".dylib"))
                    || n == "onnxruntime.dll")
        })
        .collect();
    libs.sort_by_key(|n| (n.len(), n.clone()));
    libs.pop().map(|n| capi.join(n))
}

/// Where `python3` would import `onnxruntime` from (without importing it).
fn python_package_dir() -> Option<PathBuf> {
    let script = "import importlib.util as u\ns = u.find_spec('onnxruntime')\nprint(list(s.submodule_search_locations)[0] if s and s.submodule_search_locations else '')";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!s.is_empty()).then(|| PathBuf::from(s))
}

/// `1.31.1` from the build info (`git-branch=rel-1.31.1, ...`) or the library's file name.
pub(super) fn version_of(info: &str, lib: &Path) -> String {
    if let Some(rest) = info.split("rel-").nth(1) {
        let v: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        if !v.is_empty() {
            return v;
        }
    }
    let name = lib
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.split(".so.")
        .nth(1)
        .map(String::from)
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            version_of(
                "ORT Build Info: git-branch=rel-1.31.1, git-commit-id=abc",
                Path::new("x")
            ),
            "1.31.1"
        );
        assert_eq!(
            version_of("", Path::new("/a/libonnxruntime.so.1.31.1")),
            "1.31.1"
        );
        assert_eq!(version_of("", Path::new("/a/onnxruntime.dll")), "unknown");
    }

    #[test]
    fn library_in_capi() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(library_in(d.path()), None);
        for n in [
            "libonnxruntime_providers_shared.so",
            "libonnxruntime.so.1.31.1",
            "__init__.py",
        ] {
            std::fs::write(d.path().join(n), b"").unwrap();
        }
        assert_eq!(
            library_in(d.path()).unwrap(),
            d.path().join("libonnxruntime.so.1.31.1")
        );
    }

    #[test]
    fn library_of_the_environment_the_executable_is_installed_in() {
        let d = tempfile::tempdir().unwrap();
        let venv = d.path().join("venv");
        let bin = venv.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let exe = bin.join("mlart");
        std::fs::write(&exe, b"").unwrap();
        assert_eq!(beside_executable(&exe), None, "no onnxruntime installed");
        let capi = venv.join("lib/python3.11/site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        std::fs::write(capi.join("libonnxruntime.so.1.31.1"), b"").unwrap();
        let (lib, prefix) = beside_executable(&exe).unwrap();
        let venv = std::fs::canonicalize(&venv).unwrap();
        assert_eq!(prefix, venv);
        assert_eq!(
            lib,
            venv.join("lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1")
        );
        // reached through a symlink to the binary: still its own environment
        #[cfg(unix)]
        {
            let link = d.path().join("mlart-link");
            std::os::unix::fs::symlink(&exe, &link).unwrap();
            assert_eq!(beside_executable(&link).unwrap().0, lib);
        }
    }

    #[test]
    fn missing_explicit_library_is_an_input_error() {
        let e = find_library(Some(Path::new("/nonexistent/libonnxruntime.so"))).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let m = e.to_string();
        assert!(
            m.contains("--ort-lib") && m.contains("pip install onnxruntime==1.31.1"),
            "{m}"
        );
    }
}
