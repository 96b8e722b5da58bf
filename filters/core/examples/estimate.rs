//! Reads chat-completion request bodies, one JSON object per line, and prints the prompt-token
//! estimate sluice-auth reserves for each (used by bench/estimate.py).

use std::io::{BufRead, Write};

fn main() {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let estimate = serde_json::from_str(&line)
            .map(|v| sluice_core::usage::estimate_prompt_tokens(&v))
            .unwrap_or(0);
        if writeln!(out, "{estimate}").is_err() {
            break;
        }
    }
}
