//! The pipe against a broken or hostile peer, and the ring's chunking on a
//! tiny ring; cross-process behaviour is in `tests/pipe.rs`.

use std::os::fd::AsFd;
use std::time::Duration;

use super::record::{Record, HEADER};
use super::*;

/// A duplex pipe with 4 KiB rings.
fn small<T>() -> (Connection<T>, Connection<T>) {
    pair(2, 4096, [(true, true), (true, true)]).unwrap()
}

/// Plays a writer into `to`'s read ring: `bytes` at the current tail.
fn scribble<T>(to: &Connection<T>, bytes: &[u8], publish: u32) {
    let end = to.end.as_ref().unwrap();
    let ring = end.shared().ring(end.id());
    let tail = ring.tail();
    ring.write(tail, bytes);
    ring.publish_tail(tail.wrapping_add(publish));
}

fn record(len: u64, nfds: u32) -> [u8; HEADER as usize] {
    Record { len, nfds }.encode()
}

#[test]
fn connections_can_be_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Connection<String>>();
}

#[test]
fn a_corrupt_header_is_a_protocol_error() {
    let (a, _b) = small::<u8>();
    scribble(&a, &[0xab; 16], 16);
    assert!(matches!(a.recv(), Err(Error::Protocol(_))));
}

#[test]
fn indices_too_far_apart_are_a_protocol_error() {
    let (a, _b) = small::<u8>();
    scribble(&a, &[], 4097);
    assert!(matches!(a.recv(), Err(Error::Protocol(_))));
    assert!(matches!(a.poll(Duration::ZERO), Err(Error::Protocol(_))));
    assert!(matches!(a.try_recv(), Err(Error::Protocol(_))));
}

#[test]
fn announced_descriptors_that_never_come_are_a_protocol_error() {
    let (a, b) = small::<u8>();
    scribble(&a, &record(0, 1), 16);
    drop(b);
    assert!(matches!(a.recv_bytes(), Err(Error::Protocol(_))));
}

#[test]
fn the_wrong_number_of_descriptors_is_a_protocol_error() {
    let (a, b) = small::<u8>();
    let (x, _y) = fdpass::stream_pair().unwrap();
    side::send_fds(b.end.as_ref().unwrap().sock(), &[x.as_fd()]).unwrap();
    scribble(&a, &record(0, 2), 16);
    assert!(matches!(a.recv_bytes(), Err(Error::Protocol(_))));
}

#[test]
fn a_message_cut_short_by_the_peer_leaving_is_disconnected() {
    let (a, b) = small::<u8>();
    let mut bytes = record(100, 0).to_vec();
    bytes.extend([1; 10]);
    scribble(&a, &bytes, bytes.len() as u32);
    drop(b);
    assert!(matches!(a.recv_bytes(), Err(Error::Disconnected)));
}

#[test]
fn a_region_with_a_bad_header_does_not_decode() {
    let (a, _b) = small::<u8>();
    let frame = codec::encode(&a).unwrap();
    a.end
        .as_ref()
        .unwrap()
        .shared()
        .region()
        .atomic_u32(0)
        .store(7, std::sync::atomic::Ordering::SeqCst);
    let r = codec::decode::<Connection<u8>>(&frame.bytes, frame.fds);
    assert!(matches!(r, Err(Error::Decode(_))), "{r:?}");
}

#[test]
fn messages_larger_than_the_ring_stream_through_it() {
    let (a, b) = small::<u8>();
    let lens = [0, 1, 4079, 4080, 4081, 4096, 10_000, 100_003, 0, 5];
    std::thread::scope(|s| {
        s.spawn(|| {
            for (i, &n) in lens.iter().enumerate() {
                a.send_bytes(&vec![i as u8; n]).unwrap();
            }
        });
        for (i, &n) in lens.iter().enumerate() {
            assert_eq!(b.recv_bytes().unwrap(), vec![i as u8; n]);
        }
    });
}

#[test]
fn descriptors_keep_their_order_among_wake_bytes() {
    let (a, b) = small::<Option<Connection<u8>>>();
    for round in 0..3u8 {
        let (x, y) = Pipe::<u8>::new().unwrap();
        assert!(!b.arm());
        a.send(&None).unwrap(); // a wake byte for the armed `b`
        a.send(&Some(y)).unwrap(); // 'F' after it
        b.disarm();
        assert!(b.arm(), "drains the wake byte, queues the descriptors");
        b.disarm();
        assert!(b.recv().unwrap().is_none());
        let y = b.recv().unwrap().unwrap();
        y.send(&round).unwrap();
        assert_eq!(x.recv().unwrap(), round);
    }
}

/// Without the `closes` hint and the poke, these would take a whole sleep
/// slice (20 ms) each.
#[test]
fn a_clean_close_is_seen_at_once() {
    let quick = Duration::from_millis(15);
    let (a, b) = small::<u8>();
    drop(a);
    let t = std::time::Instant::now();
    assert!(matches!(b.recv(), Err(Error::Disconnected)));
    assert!(matches!(b.send(&1), Err(Error::Disconnected)));
    assert!(matches!(b.recv(), Err(Error::Disconnected)), "and again");
    assert!(b.poll(Duration::from_secs(1)).unwrap());
    assert!(t.elapsed() < quick, "{:?}", t.elapsed());

    let (a, b) = small::<u8>();
    std::thread::scope(|s| {
        let sleeper = s.spawn(|| {
            let t = std::time::Instant::now();
            (b.recv(), t.elapsed())
        });
        while !b.end.as_ref().unwrap().shared().ring(1).is_reader_asleep() {
            std::thread::yield_now();
        }
        let t = std::time::Instant::now();
        drop(a);
        let (r, _) = sleeper.join().unwrap();
        assert!(matches!(r, Err(Error::Disconnected)));
        assert!(t.elapsed() < quick, "{:?}", t.elapsed());
    });
}

#[test]
fn a_writer_blocked_on_a_full_ring_sees_the_reader_close() {
    let (a, b) = small::<u8>();
    std::thread::scope(|s| {
        let writer = s.spawn(|| a.send_bytes(&vec![5; 1 << 20]));
        let ring = a.end.as_ref().unwrap().shared().ring(1);
        while !ring.is_writer_asleep() {
            std::thread::yield_now();
        }
        let t = std::time::Instant::now();
        drop(b);
        assert!(matches!(writer.join().unwrap(), Err(Error::Disconnected)));
        assert!(t.elapsed() < Duration::from_millis(15), "{:?}", t.elapsed());
    });
}

/// Pod slices whose bytes straddle the end of a 4 KiB ring, at every
/// offset of a record's start: they come out whole, straight into the
/// caller's buffer.
#[test]
fn pod_slices_wrap_around_the_end_of_the_ring() {
    let (a, b) = small::<()>();
    let mut out = vec![0u64; 600];
    let mut seed = 1u64;
    for round in 0..200usize {
        // 1 to 499 items: records of 24 to 4008 bytes, so the ring's end
        // falls inside most of them, at a different place each time.
        let n = 1 + (round * 37) % 499;
        let items: Vec<u64> = (0..n as u64).map(|i| seed.wrapping_mul(i + 1)).collect();
        a.send_pod(&items).unwrap();
        assert_eq!(b.recv_pod_into(&mut out).unwrap(), n, "round {round}");
        assert_eq!(&out[..n], &items[..], "round {round}");
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    }
    let end = b.end.as_ref().unwrap();
    let ring = end.shared().ring(end.id());
    assert!(ring.tail() > 10 * 4096, "the ring went round many times");
}

/// A pod message larger than the ring streams through it into the
/// caller's buffer while the writer fills the next chunks.
#[test]
fn a_pod_message_larger_than_the_ring_streams_into_the_buffer() {
    let (a, b) = small::<()>();
    let items: Vec<u32> = (0..100_003).collect();
    let mut out = vec![0u32; 200_000];
    std::thread::scope(|s| {
        s.spawn(|| a.send_pod(&items).unwrap());
        assert_eq!(b.recv_pod_into(&mut out).unwrap(), items.len());
    });
    assert_eq!(&out[..items.len()], &items[..]);
}

#[test]
fn a_short_buffer_or_a_ragged_message_is_a_typed_error() {
    let (a, b) = small::<()>();
    a.send_pod(&[1u16, 2, 3, 4, 5]).unwrap();
    a.send_bytes(&[9; 7]).unwrap();
    a.send_pod(&[6u16]).unwrap();
    let mut out = [0u16; 4];
    match b.recv_pod_into(&mut out) {
        Err(Error::BufferTooShort { message }) => {
            let items: Vec<u16> = message
                .chunks_exact(2)
                .map(bytemuck::pod_read_unaligned)
                .collect();
            assert_eq!(items, [1, 2, 3, 4, 5]);
        }
        r => panic!("{r:?}"),
    }
    assert!(matches!(
        b.recv_pod_into(&mut out),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(b.recv_pod_into(&mut out).unwrap(), 1, "the next message");
    assert_eq!(out[0], 6);
    assert!(matches!(
        b.recv_pod_into::<()>(&mut []),
        Err(Error::InvalidArgument(_))
    ));
}

/// Another copy of an end (as in another process) that sent or received
/// in between: each copy's hints about the other side's index must not
/// make it overwrite unread bytes or read stale ones.
#[test]
fn copies_of_an_end_take_turns_without_trusting_stale_hints() {
    let (a, b) = small::<u32>();
    let copy = |c: &Connection<u32>| {
        let frame = codec::encode(c).unwrap();
        codec::decode::<Connection<u32>>(&frame.bytes, frame.fds).unwrap()
    };
    let (a2, b2) = (copy(&a), copy(&b));
    let mut next_sent = 0u32;
    let mut next_recv = 0u32;
    for round in 0..300u32 {
        // Unequal turns, with messages of several sizes, so that each
        // copy's last view of the ring is out of date when it acts.
        let writer = if round % 3 == 0 { &a2 } else { &a };
        for _ in 0..(1 + round % 3) {
            writer.send(&next_sent).unwrap();
            writer
                .send_bytes(&vec![next_sent as u8; (round as usize * 97) % 600])
                .unwrap();
            next_sent += 1;
        }
        let reader = if round % 2 == 0 { &b2 } else { &b };
        while next_recv < next_sent {
            assert_eq!(reader.recv().unwrap(), next_recv);
            let bytes = reader.recv_bytes().unwrap();
            assert_eq!(bytes, vec![next_recv as u8; (round as usize * 97) % 600]);
            next_recv += 1;
        }
    }
}

/// Whether `c`'s socket holds anything (a wake byte) right now.
#[cfg(feature = "tokio")]
fn socket_has_bytes<T>(c: &Connection<T>) -> bool {
    let sock = c.end.as_ref().unwrap().sock();
    fdpass::wait_readable(sock, Some(std::time::Instant::now())).unwrap()
}

#[cfg(feature = "tokio")]
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// No cost for blocking users: a receive future that slept and was
/// dropped withdraws its announcement, so later sends write no wake byte;
/// a future that sleeps is owed one byte (and gets its message).
#[cfg(feature = "tokio")]
#[test]
fn wake_bytes_only_for_a_sleeping_future() {
    let (a, b) = small::<u64>();
    let rt = runtime();
    rt.block_on(async {
        let early = tokio::time::timeout(Duration::from_millis(5), b.recv_async()).await;
        assert!(early.is_err(), "nothing was sent");
    });
    for i in 0..100 {
        a.send(&i).unwrap();
    }
    assert!(!socket_has_bytes(&b), "a withdrawn future is owed nothing");
    for i in 0..100 {
        assert_eq!(b.recv().unwrap(), i);
    }
    // A future asleep: the sender owes it one byte, and only one.
    rt.block_on(async {
        let send = async {
            tokio::task::yield_now().await;
            for i in 0..10 {
                a.send(&i).unwrap();
            }
        };
        let (r, ()) = tokio::join!(b.recv_async(), send);
        assert_eq!(r.unwrap(), 0);
    });
    for i in 1..10 {
        assert_eq!(b.recv().unwrap(), i);
    }
    // The byte it was owed was drained or is the only one left; either
    // way nothing more is written.
    let _ = b.arm();
    b.disarm();
    a.send(&7).unwrap();
    assert!(!socket_has_bytes(&b));
}

/// A writer awaiting room in a full (4 KiB) ring is woken by a blocking
/// reader in another thread (`space_armed`), and a blocking reader that
/// frees room while nobody awaits writes no byte.
#[cfg(feature = "tokio")]
#[test]
fn a_writer_awaiting_room_is_woken_by_the_reader() {
    let (a, b) = small::<Vec<u8>>();
    let rt = runtime();
    let reader = std::thread::spawn(move || {
        let mut n = 0;
        while let Ok(v) = b.recv() {
            assert_eq!(v, vec![n as u8; 1000]);
            n += 1;
        }
        n
    });
    rt.block_on(async {
        for i in 0..500u32 {
            a.send_async(&vec![i as u8; 1000]).await.unwrap();
        }
    });
    drop(a);
    assert_eq!(reader.join().unwrap(), 500);
    let (a, b) = small::<Vec<u8>>();
    for _ in 0..3 {
        a.send(&vec![1; 1000]).unwrap();
    }
    for _ in 0..3 {
        b.recv().unwrap();
    }
    assert!(!socket_has_bytes(&a), "nobody awaited room");
}

/// One end awaited for sending (through a full ring) and for receiving at
/// once, by two tasks: the wake bytes of both directions come on its one
/// socket, and neither task may take the other's for good.
#[cfg(feature = "tokio")]
#[test]
fn one_end_awaited_both_ways_at_once() {
    let (a, b) = small::<Vec<u8>>();
    let echo = std::thread::spawn(move || {
        while let Ok(v) = b.recv() {
            if b.send(&v).is_err() {
                break;
            }
        }
    });
    for rt in [
        runtime(),
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    ] {
        rt.block_on(async {
            let send = async {
                for i in 0..2000u32 {
                    a.send_async(&vec![i as u8; 700]).await.unwrap();
                }
            };
            let recv = async {
                for i in 0..2000u32 {
                    assert_eq!(a.recv_async().await.unwrap(), vec![i as u8; 700]);
                }
            };
            let both = async { tokio::join!(send, recv) };
            tokio::time::timeout(Duration::from_secs(60), both)
                .await
                .expect("no wake-up lost");
        });
    }
    drop(a);
    echo.join().unwrap();
}
