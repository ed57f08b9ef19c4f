//! The Rust builder API end to end: JSON-lines orders in, per-customer 1-minute tumbling
//! sums out, late orders to a dead-letter stream.
//!
//!     cargo run -p weir-stream --example orders_per_minute < orders.jsonl
//!
//! With no input on stdin it runs on a small built-in sample.

use std::io::{BufRead, IsTerminal, Write};
use weir_pipeline::jsonl::{write_dead_letter, write_result, JsonlFormat};
use weir_stream::{Aggregate, Pipeline, TestDriver, Window, WindowSpec};

const SAMPLE: &str = r#"{"key":"alice","timestamp":1000,"status":"paid","amount":12.5}
{"key":"bob","timestamp":2000,"status":"paid","amount":7}
{"key":"alice","timestamp":45000,"status":"cancelled","amount":99}
{"key":"alice","timestamp":61000,"status":"paid","amount":3}
{"key":"bob","timestamp":130000,"status":"paid","amount":1}
{"key":"carol","timestamp":30000,"status":"paid","amount":5}
not json
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pipeline = Pipeline::builder()
        .filter(|e| e.value["status"] == "paid")
        .out_of_orderness(5_000)
        .window(WindowSpec {
            window: Window::Tumbling { size_ms: 60_000 },
            aggregate: Aggregate::Sum,
            field: Some("amount".into()),
            allowed_lateness_ms: 10_000,
            early_updates: false,
            max_open_windows: 100_000,
            name: "value".into(),
            extra: Vec::new(),
            end_field: None,
        })
        .build()?;
    let mut driver = TestDriver::new(pipeline);
    let stdin = std::io::stdin();
    let lines: Box<dyn BufRead> =
        if stdin.is_terminal() { Box::new(std::io::Cursor::new(SAMPLE)) } else { Box::new(stdin.lock()) };
    let mut dead = Vec::new();
    for parsed in JsonlFormat::default().read_all(lines)? {
        match parsed {
            Ok(ev) => driver.push(ev)?,
            Err(d) => dead.push(*d),
        }
    }
    // End of a bounded input: close every window.
    driver.advance_watermark(i64::MAX / 2);
    let mut out = std::io::stdout().lock();
    for r in driver.final_results() {
        write_result(&mut out, &r)?;
    }
    let mut err = std::io::stderr().lock();
    for d in dead.iter().chain(driver.dead_letters()) {
        write_dead_letter(&mut err, d)?;
    }
    out.flush()?;
    Ok(())
}
