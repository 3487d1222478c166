//! A tokio server that runs crash-prone code in a pool of worker processes
//! (feature `tokio`): each request is a pool task awaited by the
//! connection's task, with no thread per pending request; a worker that
//! crashes, aborts, panics or hangs past the per-task timeout costs that
//! one request an error, and the server keeps answering the others while
//! the pool replaces the worker.
//!
//! It listens on loopback only, runs four clients against itself (one of
//! them sends a request that segfaults its worker), prints what happened
//! and ends.
//!
//! ```sh
//! cargo run --example async_server --features tokio
//! ```
//!
//! About the segfault: the worker sends itself `SIGSEGV` (`kill(getpid(),
//! SIGSEGV)`, safe code through `rustix`). The kernel ends it exactly as it
//! ends a process that writes through a null pointer (killed by signal 11,
//! with no chance to clean up); faulting for real needs `unsafe`, which this
//! example does without. `tests/pool.rs` does fault for real, with the same
//! outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mproc::Pool;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The native code behind each request: `square N`, or one of the ways
/// such code goes wrong.
fn work(request: String) -> String {
    let (command, arg) = request.split_once(' ').unwrap_or((&request, ""));
    match command {
        "square" => match arg.parse::<u64>() {
            Ok(n) => n.saturating_mul(n).to_string(),
            Err(e) => format!("bad number {arg:?}: {e}"),
        },
        "segfault" => {
            let me = rustix::process::getpid();
            let _ = rustix::process::kill_process(me, rustix::process::Signal::SEGV);
            unreachable!("the worker died of SIGSEGV")
        }
        "abort" => std::process::abort(),
        "panic" => panic!("cannot handle {arg:?}"),
        "hang" => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        _ => format!("unknown command {command:?}"),
    }
}

/// Answers each line of a connection with the result of its task:
/// `ok VALUE` or `error WHY`.
async fn serve_connection(socket: TcpStream, pool: Arc<Pool>) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Some(request) = lines.next_line().await? {
        // The await sleeps on the pool's result: no thread is held, and
        // the task timeout of the pool bounds it.
        let reply = match pool.apply_async(work, request) {
            Ok(result) => match result.await {
                Ok(value) => format!("ok {value}"),
                Err(e) => format!("error {e}"),
            },
            Err(e) => format!("error {e}"),
        };
        write.write_all(format!("{reply}\n").as_bytes()).await?;
    }
    Ok(())
}

/// One client: sends its requests one after the other and prints each
/// reply with the time it came.
async fn client(
    name: &'static str,
    addr: std::net::SocketAddr,
    requests: Vec<String>,
    start: Instant,
) -> std::io::Result<(usize, usize)> {
    let socket = TcpStream::connect(addr).await?;
    let (read, mut write) = socket.into_split();
    let mut replies = BufReader::new(read).lines();
    let (mut ok, mut failed) = (0, 0);
    for request in requests {
        write.write_all(format!("{request}\n").as_bytes()).await?;
        let reply = tokio::time::timeout(Duration::from_secs(20), replies.next_line())
            .await
            .map_err(|_| std::io::Error::other("no reply in 20 s"))??
            .ok_or_else(|| std::io::Error::other("the server hung up"))?;
        let at = start.elapsed().as_millis();
        println!("[{at:>5} ms] {name}: {request:<12} -> {reply}");
        if reply.starts_with("ok ") {
            ok += 1;
        } else {
            failed += 1;
        }
    }
    Ok((ok, failed))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let pool = Arc::new(
        Pool::builder()
            .processes(2)
            // A task running longer has its worker killed and replaced.
            .task_timeout(Duration::from_secs(1))
            .grace_period(Duration::from_millis(100))
            .build()?,
    );
    let first_pids = pool.pids();

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("serving on {addr}, workers {first_pids:?}");
    let server_pool = pool.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let pool = server_pool.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_connection(socket, pool).await {
                    eprintln!("connection: {e}");
                }
            });
        }
    });

    let script = |s: &[&str]| s.iter().map(|r| r.to_string()).collect::<Vec<_>>();
    let steady: Vec<String> = (1..=30).map(|i| format!("square {i}")).collect();
    let clients = [
        (
            "crasher",
            script(&["square 3", "segfault", "square 4", "abort", "square 5"]),
        ),
        ("hanger", script(&["square 6", "hang", "square 7"])),
        ("panicker", script(&["panic bad input", "square 8"])),
        ("steady", steady),
    ];
    let handles: Vec<_> = clients
        .into_iter()
        .map(|(name, requests)| tokio::spawn(client(name, addr, requests, start)))
        .collect();
    let (mut ok, mut failed) = (0, 0);
    for h in handles {
        let (o, f) = h.await??;
        ok += o;
        failed += f;
    }
    server.abort();

    println!(
        "{ok} requests answered, {failed} failed (a segfault, an abort, a panic, a hang \
         past the task timeout); workers now {:?} (were {first_pids:?}); {} ms in all",
        pool.pids(),
        start.elapsed().as_millis()
    );
    assert_eq!((ok, failed), (36, 4), "every request answered");
    Ok(())
}
