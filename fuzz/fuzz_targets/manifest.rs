//! Manifests, indexes and configs of every dialect mlart reads (its own, ModelPack, the older
//! cnai ModelPack, KitOps, Docker model artifacts): parsed, classified and turned into the
//! neutral metadata view without a panic. Input: MANIFEST \0 CONFIG.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (manifest, config) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let _ = serde_json::from_slice::<oci_spec::image::ImageIndex>(manifest);
    let _ = serde_json::from_slice::<mlart::format::metadata::Metadata>(config);
    let Ok(mut m) = serde_json::from_slice::<oci_spec::image::ImageManifest>(manifest) else {
        return;
    };
    for l in m.layers() {
        let _ = mlart::format::modelpack::classify_layer(&l.media_type().to_string());
        let _ = mlart::format::dialect::layer_path(l.annotations().as_ref());
    }
    let at = m.artifact_type().as_ref().map(|a| a.to_string());
    let config_mt = m.config().media_type().to_string();
    if let Some(d) = mlart::format::modelpack::Dialect::of(at.as_deref(), &config_mt) {
        let v = serde_json::from_slice(config).unwrap_or(serde_json::Value::Null);
        let _ = mlart::format::dialect::synthesize(d, &m, &v);
    }
    // the whole read path of a store: the config blob held (its digest and size set in the
    // manifest's descriptor), the metadata read as inspect, pull and gate read it
    let store = mlart::store::memory::MemoryStore::default();
    let b = store.insert(config.to_vec());
    let mut c = m.config().clone();
    c.set_digest(b.digest.as_str().parse().unwrap());
    c.set_size(b.size);
    m.set_config(c);
    let mut store = store;
    let _ = mlart::store::metadata::read_metadata(&mut store, &m);
});
