//! A manager served on a TCP address and reached by a client process that
//! knows only the address and the key (Python's `BaseManager` with
//! `address=` and `authkey=`), with a user-defined type registered.
//!
//! `cargo run --example remote_manager` runs both on loopback: the server
//! (`Manager::serve`) here, the client (`Manager::connect`) in a child
//! process that is given nothing but the address.

use mproc::manager::Servable;
use mproc::{Address, Manager, Process};

const KEY: &[u8] = b"a shared secret";

/// A bank account served by the manager.
struct Account {
    balance: i64,
}

#[derive(serde::Serialize, serde::Deserialize)]
enum Op {
    Deposit(i64),
    Withdraw(i64),
    Balance,
}

impl Servable for Account {
    type Init = i64;
    type Call = Op;
    type Reply = i64;

    fn create(balance: i64) -> Self {
        Account { balance }
    }

    fn call(&mut self, op: Op) -> Result<i64, String> {
        match op {
            Op::Deposit(n) => self.balance += n,
            Op::Withdraw(n) if n > self.balance => return Err("insufficient funds".into()),
            Op::Withdraw(n) => self.balance -= n,
            Op::Balance => {}
        }
        Ok(self.balance)
    }
}

/// The client: connects by address and key, finds the named objects.
fn client(address: Address) {
    let m = Manager::connect(&address, KEY).expect("connect");
    let account = m.create_named::<Account>("Account", "alice", 0).unwrap();
    account.call(Op::Deposit(50)).unwrap();
    match account.call(Op::Withdraw(1_000)) {
        Err(e) => println!("client: withdraw refused by the server: {e}"),
        Ok(_) => unreachable!(),
    }
    let notes = m.list_named::<String>("notes").unwrap();
    notes.push(&"client was here".to_string()).unwrap();
}

fn main() -> mproc::Result<()> {
    let mut server = Manager::builder()
        .address(Address::tcp("127.0.0.1:0")?)
        .authkey(KEY)
        .register::<Account>("Account")
        .start()?;
    println!("server listening on {}", server.address());

    let account = server.create_named::<Account>("Account", "alice", 100)?;
    let notes = server.list_named::<String>("notes")?;

    let mut p = Process::new(client, server.address().clone());
    p.start()?;
    p.join()?;

    println!("balance: {}", account.call(Op::Balance)?);
    println!("notes: {:?}", notes.to_vec()?);
    assert_eq!(account.call(Op::Balance)?, 150);
    server.shutdown()
}
