//! Writes the synthetic demo day and its health report: `cargo run -p
//! meridian-health --example demo_report -- DIR` (then open DIR/out/report.html).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::PathBuf::from(std::env::args().nth(1).ok_or("usage: demo_report DIR")?);
    let paths = meridian_health::synth::write_demo_inputs(&root, 8.0, 0.1)?;
    let outcome = meridian_health::run::run(&meridian_health::RunOptions {
        db: paths.db,
        inputs: vec![paths.ordered, paths.located],
        out: root.join("out"),
        config: Default::default(),
        state: None,
    })?;
    println!(
        "{}: {} events; {}",
        outcome.report.status.as_str(),
        outcome.report.events.len(),
        root.join("out/report.html").display()
    );
    Ok(())
}
