//! Starting points for a spec: `mlart init` looks at a project folder and writes mlart.yaml.

pub mod init;
