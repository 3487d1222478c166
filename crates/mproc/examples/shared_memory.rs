//! SharedMemory: bytes shared by name or by handle, cleaned up after a crash.
//!
//! `cargo run --example shared_memory`

use mproc::{Pipe, Process, SharedMemory};

/// Attaches by name and writes a greeting.
fn writer(name: String) {
    let shm = SharedMemory::open(&name).unwrap();
    shm.write(0, b"written by name").unwrap();
}

/// Creates a segment of its own, then is killed before it can unlink it.
fn crashing_owner((name, ready): (String, mproc::Connection<()>)) {
    let _shm = SharedMemory::create(&name, 4096).unwrap();
    ready.send(&()).unwrap();
    loop {
        std::thread::park();
    }
}

fn main() -> mproc::Result<()> {
    let name = format!("example-{}", std::process::id());
    let shm = SharedMemory::create(&name, 64)?;
    println!("created {:?}", shm);
    mproc::spawn(writer, name.clone())?.join()?;
    println!(
        "read back: {:?}",
        String::from_utf8_lossy(&shm.to_vec()[..15])
    );
    drop(shm);
    println!(
        "after the owner's drop, open gives: {:?}",
        SharedMemory::open(&name).err()
    );

    let anon = SharedMemory::anonymous(16)?;
    fn fill(shm: SharedMemory) {
        shm.write(0, &[0xab; 16]).unwrap();
    }
    mproc::spawn(fill, anon.clone())?.join()?;
    println!("anonymous, filled by a child: {:x?}", anon.to_vec());

    let crashed = format!("example-crash-{}", std::process::id());
    let (here, there) = Pipe::new()?;
    let mut p = Process::new(crashing_owner, (crashed.clone(), there));
    p.start()?;
    here.recv()?;
    p.kill()?;
    p.join()?;
    let swept = SharedMemory::sweep()?;
    println!(
        "owner killed; the sweep removed {swept} name(s); open gives: {:?}",
        SharedMemory::open(&crashed).err()
    );
    Ok(())
}
