//! Nothing leaks: creating, sending and dropping shared objects returns
//! every descriptor and every `/dev/shm` name. Its own test binary, so that
//! no other test opens descriptors meanwhile.

use mproc::{Array, Lock, RawArray, RawValue, SharedMemory, Value};

type All = (
    Value<u64>,
    Array<u8, Lock>,
    RawValue<i8>,
    RawArray<f32>,
    SharedMemory,
    SharedMemory,
);

fn touch((v, a, rv, ra, named, anon): All) -> bool {
    *v.lock().unwrap() += 1;
    a.set(0, 1).unwrap();
    rv.set(-1);
    ra.set(0, 0.5).unwrap();
    named.write(0, &[1]).unwrap();
    anon.write(0, &[1]).unwrap();
    named.is_owner()
}

fn round(name: &str) {
    let v = Value::new(0u64).unwrap();
    let a = Array::with_lock(1, Lock::new().unwrap()).unwrap();
    let rv = RawValue::new(0i8).unwrap();
    let ra = RawArray::<f32>::new(1).unwrap();
    let named = SharedMemory::create(name, 8).unwrap();
    let anon = SharedMemory::anonymous(8).unwrap();
    let args = (
        v.clone(),
        a.clone(),
        rv.clone(),
        ra.clone(),
        named.clone(),
        anon,
    );
    assert!(!mproc::spawn(touch, args).unwrap().join().unwrap());
    assert_eq!(v.get().unwrap(), 1);
    assert_eq!(named.to_vec()[0], 1);
}

#[test]
fn shared_objects_leak_no_descriptor_and_no_name() {
    let name = format!("test-leaks-{}", std::process::id());
    round(&name); // warm up: the fork server and its socket stay
    let before = mproc::__private::open_fd_count();
    for _ in 0..20 {
        round(&name);
    }
    assert_eq!(mproc::__private::open_fd_count(), before);
    assert!(!std::path::Path::new(&format!("/dev/shm/mproc.{name}")).exists());
}
