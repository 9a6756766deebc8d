// rustnofp: Rust built without frame pointers (std's own code has none
// either), blocking in a named function (thread::sleep 20 ms, -n times).
// The profile must show the demangled path rustnofp::block_here.
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

#[inline(never)]
fn block_here(n: u32) -> f64 {
    let mut sum = 0.0;
    for _ in 0..n {
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        sum += t0.elapsed().as_secs_f64();
    }
    sum
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u32 = if args.len() > 2 && args[1] == "-n" { args[2].parse().unwrap() } else { 10 };
    let pid = std::process::id();
    println!("ready main={}", pid);
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    let secs = block_here(n);
    let truth = format!(
        "{{\"pid\":{pid},\"blocks\":[{{\"func\":\"rustnofp::block_here\",\"syscall\":\"clock_nanosleep\",\"tid\":{pid},\"count\":{n},\"seconds\":{secs:.6}}}],\"cpu\":[]}}\n"
    );
    match std::env::var("BLOCKPROF_TRUTH") {
        Ok(path) if !path.is_empty() => std::fs::write(path, truth).unwrap(),
        _ => print!("{truth}"),
    }
}
