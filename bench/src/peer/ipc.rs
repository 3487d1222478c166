//! ipc-channel runners: a child (this binary re-executed with `--child`)
//! reached through an `IpcOneShotServer`, as ipc-channel's users do.

use std::process::{Child, Command};

use ipc_channel::ipc::{
    self, IpcBytesReceiver, IpcBytesSender, IpcOneShotServer, IpcReceiver, IpcSender,
};

use crate::affinity;
use crate::harness::{gigabytes_per_sec, micros_per_op, Result, Session};

type EchoBoot = (IpcSender<u64>, IpcReceiver<u64>);
type SinkBoot = (IpcBytesSender, IpcBytesReceiver);

/// Starts this binary as `--child <name> <server name>` and accepts what
/// it sends back.
fn start_child<T>(name: &str) -> Result<(Child, T)>
where
    T: serde::Serialize + for<'de> serde::Deserialize<'de>,
{
    let (server, server_name) = IpcOneShotServer::<T>::new()?;
    let cpu = affinity::child_cpu().map_or("-".into(), |c| c.to_string());
    let child = Command::new(std::env::current_exe()?)
        .args(["--child", name, &server_name, &cpu])
        .spawn()?;
    let (_, boot) = server.accept()?;
    Ok((child, boot))
}

/// The echo child: returns each number it receives, until disconnected.
pub fn child_echo(server: &str, cpu: Option<usize>) {
    affinity::pin(cpu).expect("pin");
    let boot = IpcSender::<EchoBoot>::connect(server.to_string()).expect("connect");
    let (in_tx, in_rx) = ipc::channel::<u64>().expect("channel");
    let (out_tx, out_rx) = ipc::channel::<u64>().expect("channel");
    boot.send((in_tx, out_rx)).expect("boot");
    while let Ok(x) = in_rx.recv() {
        if out_tx.send(x).is_err() {
            break;
        }
    }
}

/// The sink child: receives messages; acks each empty one.
pub fn child_sink(server: &str, cpu: Option<usize>) {
    affinity::pin(cpu).expect("pin");
    let boot = IpcSender::<SinkBoot>::connect(server.to_string()).expect("connect");
    let (data_tx, data_rx) = ipc::bytes_channel().expect("channel");
    let (ack_tx, ack_rx) = ipc::bytes_channel().expect("channel");
    boot.send((data_tx, ack_rx)).expect("boot");
    while let Ok(msg) = data_rx.recv() {
        if msg.is_empty() && ack_tx.send(b"k").is_err() {
            break;
        }
    }
}

/// `IpcSender<u64>` / `IpcReceiver<u64>` ping-pong with the echo child.
pub struct Echo {
    chans: Option<EchoBoot>,
    child: Child,
    n: usize,
    next: u64,
}

impl Echo {
    /// `n` round trips per repetition. Microseconds per round trip.
    pub fn session(n: usize) -> Result<Box<dyn Session>> {
        let (child, chans) = start_child::<EchoBoot>("ipc-echo")?;
        Ok(Box::new(Echo {
            chans: Some(chans),
            child,
            n,
            next: 0,
        }))
    }
}

impl Session for Echo {
    fn rep(&mut self) -> Result<f64> {
        let (tx, rx) = self.chans.as_ref().ok_or("closed")?;
        let next = &mut self.next;
        micros_per_op(self.n, || {
            *next += 1;
            tx.send(*next)?;
            match rx.recv()? == *next {
                true => Ok(()),
                false => Err("wrong echo".into()),
            }
        })
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        drop(self.chans.take());
        let _ = self.child.wait();
    }
}

/// `IpcBytesSender::send` of `count` `size`-byte messages to the sink
/// child, then an ack.
pub struct Sink {
    chans: Option<SinkBoot>,
    child: Child,
    payload: Vec<u8>,
    count: usize,
}

impl Sink {
    /// GB/s.
    pub fn session(size: usize, count: usize) -> Result<Box<dyn Session>> {
        let (child, chans) = start_child::<SinkBoot>("ipc-sink")?;
        Ok(Box::new(Sink {
            chans: Some(chans),
            child,
            payload: vec![7u8; size],
            count,
        }))
    }
}

impl Session for Sink {
    fn rep(&mut self) -> Result<f64> {
        let (tx, ack) = self.chans.as_ref().ok_or("closed")?;
        let (payload, count) = (&self.payload, self.count);
        gigabytes_per_sec(payload.len() * count, || {
            for _ in 0..count {
                tx.send(payload)?;
            }
            tx.send(&[])?;
            ack.recv()?;
            Ok(())
        })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        drop(self.chans.take());
        let _ = self.child.wait();
    }
}
