//! The tera engine behind every rendered artefact: the templates under `reports/templates/`,
//! compiled once, and the filters they use (`tex`, `fixed`, `short`). Tables ([`crate::render`])
//! and figures ([`crate::analyses`], [`crate::plots`]) both render through it, so neither
//! imports the other.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Serialize;
use tera::{Context, Tera, Value};

use crate::{Error, Result};

fn tex_escape(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let s = tera::try_get_value!("tex", "value", String, value);
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(ch);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '∞' => out.push_str("$\\infty$"),
            '±' => out.push_str("$\\pm$"),
            '–' => out.push_str("--"),
            '⚠' => out.push_str("(!)"),
            c => out.push(c),
        }
    }
    Ok(Value::String(out))
}

/// `value | fixed(d=2)`: a number with exactly `d` decimals.
fn fixed(value: &Value, args: &HashMap<String, Value>) -> tera::Result<Value> {
    let v = tera::try_get_value!("fixed", "value", f64, value);
    let d = args.get("d").and_then(Value::as_u64).unwrap_or(2) as usize;
    Ok(Value::String(format!("{v:.d$}")))
}

/// `fraction | pct`: a fraction as a percentage with two decimals (`0.5` → `50.00`).
fn pct(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let v = tera::try_get_value!("pct", "value", f64, value);
    Ok(Value::String(format!("{:.2}", v * 100.0)))
}

/// `p | pvalue`: a p-value with four decimals, `< 0.0001` below that.
fn pvalue(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let v = tera::try_get_value!("pvalue", "value", f64, value);
    Ok(Value::String(if v < 1e-4 { "< 0.0001".to_string() } else { format!("{v:.4}") }))
}

/// `hash | short`: the first 16 hex digits of a hash.
fn short(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let s = tera::try_get_value!("short", "value", String, value);
    Ok(Value::String(s.chars().take(16).collect()))
}

fn engine() -> Result<&'static Tera> {
    static ENGINE: OnceLock<std::result::Result<Tera, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut t = Tera::default();
            t.add_raw_templates([
                ("macros.tera", include_str!("../templates/macros.tera")),
                ("grid.md", include_str!("../templates/grid.md.tera")),
                ("grid.tex", include_str!("../templates/grid.tex.tera")),
                ("report.html", include_str!("../templates/report.html.tera")),
                ("bars.svg", include_str!("../templates/bars.svg.tera")),
                ("lines.svg", include_str!("../templates/lines.svg.tera")),
                ("heat.svg", include_str!("../templates/heat.svg.tera")),
                ("row.svg", include_str!("../templates/row.svg.tera")),
                ("compare.md", include_str!("../templates/compare.md.tera")),
                ("compare.tex", include_str!("../templates/compare.tex.tera")),
                ("compare.html", include_str!("../templates/compare.html.tera")),
                ("regress.md", include_str!("../templates/regress.md.tera")),
                ("bench.md", include_str!("../templates/bench.md.tera")),
                ("claims.md", include_str!("../templates/claims.md.tera")),
                ("diagnostics.md", include_str!("../templates/diagnostics.md.tera")),
            ])
            .map_err(|e| format!("{e:?}"))?;
            t.register_filter("tex", tex_escape);
            t.register_filter("fixed", fixed);
            t.register_filter("short", short);
            t.register_filter("pct", pct);
            t.register_filter("pvalue", pvalue);
            t.autoescape_on(vec![".html", ".svg"]);
            Ok(t)
        })
        .as_ref()
        .map_err(|e| Error::Template(e.clone()))
}

/// Renders a plot template (`lines.svg`, `bars.svg`, `heat.svg`) with its geometry as `p`.
pub(crate) fn render_svg<T: Serialize>(name: &str, plot: &T) -> Result<String> {
    render_template(name, "p", plot)
}

pub(crate) fn render_template<T: Serialize>(name: &str, key: &str, value: &T) -> Result<String> {
    let mut ctx = Context::new();
    ctx.insert(key, value);
    engine()?.render(name, &ctx).map_err(|e| Error::Template(template_error(&e)))
}

fn template_error(e: &tera::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}
