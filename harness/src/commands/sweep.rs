//! `infoat sweep --emit slurm`: a preset as a Slurm job array with registry shards and a
//! merge script.

use std::process::ExitCode;

use anyhow::Result;
use infoat_harness::cli::SweepArgs;
use infoat_harness::cost;
use infoat_harness::preset::Preset;

/// `infoat sweep --emit slurm`: a job array with one task per preset run, each writing its own
/// registry shard, plus the script that merges the shards.
pub(crate) fn run(a: SweepArgs) -> Result<ExitCode> {
    let preset = Preset::find(&a.preset)?;
    anyhow::ensure!(a.margin.is_finite() && a.margin >= 1.0, "--margin {}: expected a number ≥ 1", a.margin);
    let out = std::path::absolute(&a.out)?;
    std::fs::create_dir_all(out.join("logs"))?;
    std::fs::create_dir_all(out.join("shards"))?;
    let exe = std::env::current_exe()?;
    let preset_arg =
        if preset.embedded { preset.name.clone() } else { std::path::absolute(&a.preset)?.display().to_string() };
    let mut longest = 0.0f64;
    let mut gpu = false;
    let mut table = String::from("task\trun\tconfig_hash\testimate_s\n");
    for (i, r) in preset.runs.iter().enumerate() {
        let (device, c) = cost::estimate(r, false, false)?;
        gpu |= device == cost::CostDevice::Gpu;
        longest = longest.max(c.total_s());
        table.push_str(&format!("{i}\t{}\t{}\t{:.0}\n", r.name, r.config.hash()?, c.total_s()));
    }
    let limit_min = ((longest * a.margin / 60.0).ceil() as u64).max(10);
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let runs: Vec<String> = preset.runs.iter().map(|r| quote(&r.name)).collect();
    let mut ctx = tera::Context::new();
    ctx.insert("preset", &preset.name);
    ctx.insert("n_minus_1", &(preset.runs.len() - 1));
    ctx.insert("out", &out.display().to_string());
    ctx.insert("time", &format!("{}:{:02}:00", limit_min / 60, limit_min % 60));
    ctx.insert(
        "longest_estimate",
        &cost::human(if gpu { cost::CostDevice::Gpu } else { cost::CostDevice::Cpu }, longest),
    );
    ctx.insert("margin", &a.margin);
    ctx.insert("gpu", &gpu);
    ctx.insert("partition", &a.partition);
    ctx.insert("runs", &runs);
    ctx.insert("exe", &quote(&exe.display().to_string()));
    ctx.insert("preset_arg", &quote(&preset_arg));
    ctx.insert("ld_library_path", &std::env::var("LD_LIBRARY_PATH").ok().map(|p| quote(&p)));
    ctx.insert(
        "data_dir",
        &a.data_dir.as_ref().map(|d| std::path::absolute(d).map(|d| quote(&d.display().to_string()))).transpose()?,
    );
    ctx.insert("registry", &quote(&std::path::absolute(&a.registry)?.display().to_string()));
    let mut tera = tera::Tera::default();
    tera.add_raw_templates([
        ("sweep.sbatch", include_str!("../../templates/sweep.sbatch.tera")),
        ("merge.sh", include_str!("../../templates/merge.sh.tera")),
    ])?;
    for (name, file) in [("sweep.sbatch", "sweep.sbatch"), ("merge.sh", "merge.sh")] {
        let path = out.join(file);
        std::fs::write(&path, tera.render(name, &ctx)?)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::write(out.join("runs.tsv"), table)?;
    println!("{}", out.join("sweep.sbatch").display());
    eprintln!(
        "{} array tasks, time limit {limit_min} min each (longest estimate × {}){}; submit with `sbatch {}`, then merge with `sh {}`",
        preset.runs.len(),
        a.margin,
        if gpu { ", one GPU each" } else { "" },
        out.join("sweep.sbatch").display(),
        out.join("merge.sh").display()
    );
    Ok(ExitCode::SUCCESS)
}
