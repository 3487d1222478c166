//! What an operator sees through `tracing`: a subscriber installed for
//! this test binary records every event (level, message, fields) and the
//! tests look for the ones their scenario must produce.
#![cfg(feature = "tracing")]

use std::sync::{Arc, Mutex, OnceLock};

use mproc::{Address, Client, Listener};
use tracing_subscriber::fmt::MakeWriter;

/// Everything written by the subscriber, one event per line.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// The lines captured so far (the subscriber is installed once).
fn events() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let c = Captured::default();
        tracing_subscriber::fmt()
            .with_writer(c.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .init();
        c
    })
}

/// Waits (bounded) for a captured line holding every one of `parts`.
fn wait_for_line(parts: &[&str]) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = String::from_utf8_lossy(&events().0.lock().unwrap()).into_owned();
        if let Some(line) = text.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
            return line.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no event with {parts:?} in:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn a_refused_authentication_is_a_warning_naming_peer_and_reason() {
    events();
    let listener = Listener::bind(&Address::tcp("127.0.0.1:0").unwrap(), Some(b"right")).unwrap();
    let addr = listener.address().clone();
    let err = Client::connect::<()>(&addr, Some(b"wrong")).unwrap_err();
    assert!(matches!(err, mproc::Error::Authentication(_)), "{err:?}");
    let line = wait_for_line(&["WARN", "authentication failed", "peer=127.0.0.1:"]);
    assert!(line.contains("reason="), "{line}");
    // `accept` reports it too, as Python's does.
    assert!(matches!(
        listener.accept::<()>(),
        Err(mproc::Error::Authentication(_))
    ));
    // And a good client is accepted and authenticated, at debug level.
    let ok = std::thread::spawn(move || Client::connect::<()>(&addr, Some(b"right")).map(drop));
    listener.accept::<()>().unwrap();
    ok.join().unwrap().unwrap();
    wait_for_line(&["DEBUG", "connection authenticated", "peer=127.0.0.1:"]);
}
