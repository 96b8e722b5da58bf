//! Reads texts, one JSON string per line, and either prints the findings of the default PII
//! scanner for each (`pii_scan`), or scans them all repeatedly and prints the throughput in MB/s
//! (`pii_scan throughput`). Used by bench/pii.py, natively and compiled to wasm32-wasip1.

use std::io::{BufRead, Write};

fn main() {
    let scanner = match sluice_core::pii::Scanner::from_json(b"{}") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let texts: Vec<String> = std::io::stdin()
        .lock()
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<String>(&l).ok())
        .collect();
    let mut out = std::io::stdout().lock();
    if std::env::args().nth(1).as_deref() == Some("throughput") {
        let bytes: usize = texts.iter().map(String::len).sum();
        let start = std::time::Instant::now();
        let mut rounds = 0u32;
        let mut found = 0usize;
        while start.elapsed().as_secs_f64() < 3.0 {
            for t in &texts {
                found += scanner.find(t).len();
            }
            rounds += 1;
        }
        let mbs = (bytes as f64 * f64::from(rounds)) / start.elapsed().as_secs_f64() / 1e6;
        let _ = writeln!(
            out,
            "{mbs:.1} MB/s ({} KB corpus x {rounds} rounds, {found} findings)",
            bytes / 1000
        );
        return;
    }
    for t in &texts {
        let spans: Vec<serde_json::Value> = scanner
            .find(t)
            .into_iter()
            .map(|f| {
                serde_json::json!([
                    f.kind,
                    t.get(..f.start).map_or(0, |s| s.chars().count()),
                    t.get(..f.end).map_or(0, |s| s.chars().count())
                ])
            })
            .collect();
        let _ = writeln!(out, "{}", serde_json::Value::Array(spans));
    }
}
