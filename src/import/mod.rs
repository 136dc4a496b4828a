//! Starting points for a spec: `mlart init` looks at a project folder (plain files, an MLflow
//! model, a Hugging Face folder, a KitOps Kitfile or a modctl Modelfile) and writes
//! mlart.yaml; `mlart bundle` on a folder without one uses the same spec in memory.

pub mod draft;
pub mod hf;
pub mod init;
pub mod kitfile;
pub mod mlflow;
pub mod modelfile;
