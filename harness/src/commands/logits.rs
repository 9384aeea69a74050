//! `infoat logits`: a model's logits on the first test images, printed as JSON or written as a
//! torch.save tensor.

use std::process::ExitCode;

use anyhow::Result;
use infoat_harness::cli::LogitsArgs;
use infoat_harness::pipeline::logits::{logits, LogitsRequest};
use infoat_registry::Registry;

pub(crate) fn run(a: LogitsArgs) -> Result<ExitCode> {
    let req = LogitsRequest {
        source: super::model_source(&a.model)?,
        dataset: a.dataset,
        data_dir: a.data_dir,
        device: a.device.device()?,
        n: a.n,
    };
    let registry = match &a.model.run {
        Some(_) => Some(Registry::open(&a.registry)?),
        None => None,
    };
    let out = logits(&req, registry.as_ref())?;
    if let Some(path) = &a.out {
        infoat_harness::interop::torch_file::save_tensor(&out.logits, path)?;
        eprintln!("{}: logits of {} images, model {}", path.display(), out.labels.len(), out.model.hash.short(16));
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<f32>> = Vec::<Vec<f32>>::try_from(&out.logits)?;
    let json = serde_json::json!({
        "model": out.model,
        "dataset": out.dataset,
        "labels": out.labels,
        "logits": rows,
    });
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(ExitCode::SUCCESS)
}
