//! The gate in front of the pickle decoder: a walk over the opcodes that
//! admits data and nothing else, with bounded depth, size and integers.
//!
//! A pickle is a program for a small stack machine. Most opcodes build data
//! (ints, floats, strings, bytes, lists, tuples, dicts, sets, the memo); a
//! few name and call code (`GLOBAL`, `STACK_GLOBAL`, `REDUCE`, `BUILD`,
//! `INST`, `OBJ`, `NEWOBJ`, `NEWOBJ_EX`, the extension registry, persistent
//! ids) or refer to buffers outside the stream (`NEXT_BUFFER`,
//! `READONLY_BUFFER`). The walk refuses the second kind by name, so the
//! decoder behind it only ever sees data, and it simulates the stack with
//! only two numbers per item (nesting depth and expanded size) to refuse,
//! before anything is built:
//!
//! - nesting deeper than [`MAX_DEPTH`] (the decoder and `T`'s
//!   deserialiser recurse);
//! - more values than [`MAX_NODES_PER_BYTE`] per byte of input, counted
//!   with every memo reference expanded (the decoder copies what `GET`
//!   fetches, so a few bytes of memo references could otherwise ask for
//!   gigabytes);
//! - integers longer than [`MAX_INT_BYTES`] (arbitrary-size integers have
//!   no Rust type here, and parsing long decimal ones costs quadratic time);
//! - a declared length past the end of the input;
//! - stack underflow, a missing mark or memo entry, trailing bytes.

use std::collections::HashMap;

/// Deepest nesting of containers admitted.
pub(crate) const MAX_DEPTH: u32 = 256;

/// Values admitted per byte of input, memo references expanded.
pub(crate) const MAX_NODES_PER_BYTE: u64 = 16;

/// Values admitted whatever the input's size (small pickles may repeat a
/// memo entry a little).
const MIN_NODES: u64 = 1 << 16;

/// Longest integer admitted, in bytes of two's complement (text integers:
/// decimal digits, at about 2.4 per byte).
pub(crate) const MAX_INT_BYTES: usize = 16;

/// Why the walk refused a pickle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// An opcode that names or runs code, or refers to an outside buffer.
    Code(&'static str),
    /// A byte that is no opcode of protocols 0 to 5.
    UnknownOpcode(u8),
    /// A protocol newer than 5.
    Protocol(u8),
    /// The input ends inside an opcode or before `STOP`.
    Truncated,
    /// Bytes after `STOP`.
    Trailing,
    /// An opcode found the stack or its marks not as it needs them.
    Stack(&'static str),
    /// `GET` of a memo entry that was never stored.
    Memo(u64),
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
    /// More values than the input's size admits.
    TooLarge,
    /// An integer longer than [`MAX_INT_BYTES`].
    IntTooLong,
    /// A text argument that is not what its opcode reads.
    Literal(&'static str),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Code(op) => write!(
                f,
                "the pickle uses {op}, which names or runs code: only data is accepted"
            ),
            Refused::UnknownOpcode(b) => write!(f, "the pickle has an unknown opcode 0x{b:02x}"),
            Refused::Protocol(p) => write!(f, "the pickle's protocol {p} is newer than 5"),
            Refused::Truncated => f.write_str("the pickle ends early"),
            Refused::Trailing => f.write_str("the pickle has bytes after its STOP"),
            Refused::Stack(op) => write!(f, "the pickle's {op} finds the stack empty or unmarked"),
            Refused::Memo(i) => write!(f, "the pickle fetches memo entry {i}, never stored"),
            Refused::TooDeep => write!(f, "the pickle nests deeper than {MAX_DEPTH} levels"),
            Refused::TooLarge => f.write_str(
                "the pickle expands to more values than its size admits (memo references)",
            ),
            Refused::IntTooLong => write!(
                f,
                "the pickle has an integer longer than {MAX_INT_BYTES} bytes (no Rust type holds it)"
            ),
            Refused::Literal(op) => write!(f, "the pickle's {op} has a malformed argument"),
        }
    }
}

/// One stack item as the walk sees it.
#[derive(Clone, Copy, Debug)]
enum Item {
    /// A value: how deep it nests (a scalar is 0, a container one more
    /// than its deepest item, and at least 1) and how many values it holds,
    /// itself included.
    Value { depth: u32, nodes: u64 },
    /// `MARK`.
    Mark,
}

const SCALAR: Item = Item::Value { depth: 0, nodes: 1 };

/// An empty container: one level.
const EMPTY: Item = Item::Value { depth: 1, nodes: 1 };

/// Walks `bytes`; `Ok` if it is one pickle of data within the bounds.
pub(crate) fn check(bytes: &[u8]) -> Result<(), Refused> {
    Walk::new(bytes).run()
}

struct Walk<'a> {
    bytes: &'a [u8],
    at: usize,
    stack: Vec<Item>,
    memo: HashMap<u64, Item>,
    /// Values built so far, memo references expanded.
    nodes: u64,
    budget: u64,
}

impl<'a> Walk<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        let budget = (bytes.len() as u64)
            .saturating_mul(MAX_NODES_PER_BYTE)
            .max(MIN_NODES);
        Walk {
            bytes,
            at: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
            nodes: 0,
            budget,
        }
    }

    fn run(mut self) -> Result<(), Refused> {
        loop {
            let op = self.take(1)?[0];
            if op == b'.' {
                // STOP: one value left, nothing after it.
                if self.at != self.bytes.len() {
                    return Err(Refused::Trailing);
                }
                return match self.stack.as_slice() {
                    [Item::Value { .. }] => Ok(()),
                    _ => Err(Refused::Stack("STOP")),
                };
            }
            self.step(op)?;
        }
    }

    fn step(&mut self, op: u8) -> Result<(), Refused> {
        match op {
            // Framing and protocol.
            0x80 => {
                let p = self.take(1)?[0];
                if p > 5 {
                    return Err(Refused::Protocol(p));
                }
            }
            0x95 => {
                self.take(8)?;
            }
            // Marks and stack shuffling.
            b'(' => self.stack.push(Item::Mark),
            b'0' => {
                self.pop_value("POP")?;
            }
            b'1' => {
                self.pop_mark("POP_MARK")?;
            }
            b'2' => {
                let top = self.peek_value("DUP")?;
                self.push(top)?;
            }
            // Scalars.
            b'N' | 0x88 | 0x89 => self.push(SCALAR)?,
            b'K' => self.scalar(1)?,
            b'M' => self.scalar(2)?,
            b'J' => self.scalar(4)?,
            b'G' => self.scalar(8)?,
            b'I' | b'L' => {
                let name = if op == b'I' { "INT" } else { "LONG" };
                let line = self.line()?;
                let digits = line.iter().filter(|b| b.is_ascii_digit()).count();
                // ~2.41 decimal digits per byte.
                if digits > MAX_INT_BYTES * 5 / 2 {
                    return Err(Refused::IntTooLong);
                }
                if digits == 0 {
                    return Err(Refused::Literal(name));
                }
                self.push(SCALAR)?;
            }
            b'F' => {
                let line = self.line()?;
                if line.len() > 64 {
                    return Err(Refused::Literal("FLOAT"));
                }
                self.push(SCALAR)?;
            }
            0x8a => {
                let n = self.take(1)?[0] as usize;
                self.long(n)?;
            }
            0x8b => {
                let n = self.length(4)?;
                self.long(n)?;
            }
            // Strings and bytes: a counted argument.
            b'U' | b'C' | 0x8c => {
                let n = self.take(1)?[0] as usize;
                self.take(n)?;
                self.push(SCALAR)?;
            }
            b'T' | b'X' | b'B' => {
                let n = self.length(4)?;
                self.take(n)?;
                self.push(SCALAR)?;
            }
            0x8d | 0x8e | 0x96 => {
                let n = self.length(8)?;
                self.take(n)?;
                self.push(SCALAR)?;
            }
            b'S' | b'V' => {
                self.line()?;
                self.push(SCALAR)?;
            }
            // Containers.
            b']' | b')' | b'}' | 0x8f => self.push(EMPTY)?,
            0x85 => self.tuple(1)?,
            0x86 => self.tuple(2)?,
            0x87 => self.tuple(3)?,
            b't' | b'l' | b'd' | 0x91 => {
                let name = match op {
                    b't' => "TUPLE",
                    b'l' => "LIST",
                    b'd' => "DICT",
                    _ => "FROZENSET",
                };
                let items = self.pop_mark(name)?;
                let v = self.nest(&items)?;
                // The container is new; its items were counted already.
                self.count(1)?;
                self.stack.push(v);
            }
            b'a' => {
                let item = self.pop_value("APPEND")?;
                self.extend_top("APPEND", &[item])?;
            }
            b's' => {
                let value = self.pop_value("SETITEM")?;
                let key = self.pop_value("SETITEM")?;
                self.extend_top("SETITEM", &[key, value])?;
            }
            b'e' | b'u' | 0x90 => {
                let name = match op {
                    b'e' => "APPENDS",
                    b'u' => "SETITEMS",
                    _ => "ADDITEMS",
                };
                let items = self.pop_mark(name)?;
                self.extend_top(name, &items)?;
            }
            // The memo.
            b'p' => {
                let i = self.decimal("PUT")?;
                self.put(i)?;
            }
            b'q' => {
                let i = u64::from(self.take(1)?[0]);
                self.put(i)?;
            }
            b'r' => {
                let i = self.length(4)? as u64;
                self.put(i)?;
            }
            0x94 => {
                let i = self.memo.len() as u64;
                self.put(i)?;
            }
            b'g' => {
                let i = self.decimal("GET")?;
                self.get(i)?;
            }
            b'h' => {
                let i = u64::from(self.take(1)?[0]);
                self.get(i)?;
            }
            b'j' => {
                let i = self.length(4)? as u64;
                self.get(i)?;
            }
            // Code, or buffers outside the stream: never.
            b'c' => return Err(Refused::Code("GLOBAL")),
            0x93 => return Err(Refused::Code("STACK_GLOBAL")),
            b'R' => return Err(Refused::Code("REDUCE")),
            b'b' => return Err(Refused::Code("BUILD")),
            b'i' => return Err(Refused::Code("INST")),
            b'o' => return Err(Refused::Code("OBJ")),
            0x81 => return Err(Refused::Code("NEWOBJ")),
            0x92 => return Err(Refused::Code("NEWOBJ_EX")),
            0x82..=0x84 => return Err(Refused::Code("EXT")),
            b'P' => return Err(Refused::Code("PERSID")),
            b'Q' => return Err(Refused::Code("BINPERSID")),
            0x97 => return Err(Refused::Code("NEXT_BUFFER")),
            0x98 => return Err(Refused::Code("READONLY_BUFFER")),
            other => return Err(Refused::UnknownOpcode(other)),
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Refused> {
        let end = self.at.checked_add(n).ok_or(Refused::Truncated)?;
        let s = self.bytes.get(self.at..end).ok_or(Refused::Truncated)?;
        self.at = end;
        Ok(s)
    }

    /// A little-endian count of `width` bytes, which must fit in what is
    /// left of the input (a count is always of bytes or memo slots that
    /// follow or were made, never more than the input holds).
    fn length(&mut self, width: usize) -> Result<usize, Refused> {
        let raw = self.take(width)?;
        let mut le = [0u8; 8];
        le[..width].copy_from_slice(raw);
        let n = u64::from_le_bytes(le);
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.bytes.len())
            .ok_or(Refused::Truncated)
    }

    /// A text argument up to its newline.
    fn line(&mut self) -> Result<&'a [u8], Refused> {
        let rest = &self.bytes[self.at..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(Refused::Truncated)?;
        self.at += n + 1;
        Ok(&rest[..n])
    }

    fn decimal(&mut self, name: &'static str) -> Result<u64, Refused> {
        let line = self.line()?;
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(Refused::Literal(name))
    }

    fn scalar(&mut self, width: usize) -> Result<(), Refused> {
        self.take(width)?;
        self.push(SCALAR)
    }

    fn long(&mut self, n: usize) -> Result<(), Refused> {
        if n > MAX_INT_BYTES {
            return Err(Refused::IntTooLong);
        }
        self.take(n)?;
        self.push(SCALAR)
    }

    fn push(&mut self, item: Item) -> Result<(), Refused> {
        if let Item::Value { nodes, .. } = item {
            self.count(nodes)?;
        }
        self.stack.push(item);
        Ok(())
    }

    /// Counts `n` more values built, against the budget.
    fn count(&mut self, n: u64) -> Result<(), Refused> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > self.budget {
            return Err(Refused::TooLarge);
        }
        Ok(())
    }

    fn peek_value(&self, name: &'static str) -> Result<Item, Refused> {
        match self.stack.last() {
            Some(v @ Item::Value { .. }) => Ok(*v),
            _ => Err(Refused::Stack(name)),
        }
    }

    fn pop_value(&mut self, name: &'static str) -> Result<Item, Refused> {
        let v = self.peek_value(name)?;
        self.stack.pop();
        Ok(v)
    }

    /// Pops the items down to the topmost mark, and the mark.
    fn pop_mark(&mut self, name: &'static str) -> Result<Vec<Item>, Refused> {
        let mark = self
            .stack
            .iter()
            .rposition(|i| matches!(i, Item::Mark))
            .ok_or(Refused::Stack(name))?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items)
    }

    /// A container holding `items`: one level deeper than the deepest.
    /// (Its items were counted when they were pushed; the container itself
    /// is counted by `push`.)
    fn nest(&self, items: &[Item]) -> Result<Item, Refused> {
        let mut depth = 0;
        let mut nodes = 1u64;
        for item in items {
            if let Item::Value { depth: d, nodes: n } = item {
                depth = depth.max(*d);
                nodes = nodes.saturating_add(*n);
            }
        }
        let depth = depth + 1;
        if depth > MAX_DEPTH {
            return Err(Refused::TooDeep);
        }
        Ok(Item::Value { depth, nodes })
    }

    fn tuple(&mut self, n: usize) -> Result<(), Refused> {
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.pop_value("TUPLE")?);
        }
        let v = self.nest(&items)?;
        // The container is new; its items were counted already.
        self.count(1)?;
        self.stack.push(v);
        Ok(())
    }

    /// Adds `items` to the container on top of the stack (a list, dict or
    /// set: the walk does not tell them apart; the decoder does).
    fn extend_top(&mut self, name: &'static str, items: &[Item]) -> Result<(), Refused> {
        let top = self.pop_value(name)?;
        let Item::Value { depth, nodes } = top else {
            return Err(Refused::Stack(name));
        };
        // The container keeps its own depth if its new items are shallower.
        let grown = self.nest(items)?;
        let Item::Value {
            depth: d,
            nodes: added,
        } = grown
        else {
            return Err(Refused::Stack(name));
        };
        let depth = depth.max(d);
        // `added` counts a container of its own (the 1 of `nest`): the
        // items join an existing one.
        let nodes = nodes.saturating_add(added - 1);
        self.stack.push(Item::Value { depth, nodes });
        Ok(())
    }

    fn put(&mut self, i: u64) -> Result<(), Refused> {
        let top = self.peek_value("PUT")?;
        self.memo.insert(i, top);
        Ok(())
    }

    /// Pushes a copy of memo entry `i`: every value it holds counts again,
    /// as the decoder copies it.
    fn get(&mut self, i: u64) -> Result<(), Refused> {
        let item = *self.memo.get(&i).ok_or(Refused::Memo(i))?;
        self.push(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Protocol 4 pickles written by CPython 3.11 (`pickle.dumps(x, 4)`).
    #[test]
    fn data_pickles_pass() {
        // {'a': [1, 2.5, None, True], 'b': (b'x', 'y')}
        let p = b"\x80\x04\x95(\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01a\x94]\x94(K\x01G@\x04\x00\x00\x00\x00\x00\x00N\x88e\x8c\x01b\x94C\x01x\x94\x8c\x01y\x94\x86\x94u.";
        assert_eq!(check(p), Ok(()));
        // Protocol 0: (lp0\nI1\naI2\na.
        assert_eq!(check(b"(lp0\nI1\naI2\na."), Ok(()));
    }

    #[test]
    fn code_is_refused_by_name() {
        // os.system('true'), protocol 0.
        let p = b"cos\nsystem\n(S'true'\ntR.";
        assert_eq!(check(p), Err(Refused::Code("GLOBAL")));
        // Protocol 4: STACK_GLOBAL.
        let p = b"\x80\x04\x8c\x02os\x8c\x06system\x93.";
        assert_eq!(check(p), Err(Refused::Code("STACK_GLOBAL")));
        assert_eq!(check(b"\x80\x05\x97."), Err(Refused::Code("NEXT_BUFFER")));
    }

    #[test]
    fn malformed_input_is_refused() {
        assert_eq!(check(b""), Err(Refused::Truncated));
        assert_eq!(check(b"N"), Err(Refused::Truncated));
        assert_eq!(check(b"N.x"), Err(Refused::Trailing));
        assert_eq!(check(b"NN."), Err(Refused::Stack("STOP")));
        assert_eq!(check(b"a."), Err(Refused::Stack("APPEND")));
        assert_eq!(check(b"h\x07."), Err(Refused::Memo(7)));
        assert_eq!(check(b"\x80\x06N."), Err(Refused::Protocol(6)));
        assert_eq!(check(b"\xff"), Err(Refused::UnknownOpcode(0xff)));
        // A declared length far past the input.
        assert_eq!(check(b"X\xff\xff\xff\x7f"), Err(Refused::Truncated));
        assert_eq!(
            check(b"\x8d\xff\xff\xff\xff\xff\xff\xff\x7f"),
            Err(Refused::Truncated)
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut p = vec![b']'; MAX_DEPTH as usize + 1];
        p.extend(std::iter::repeat_n(b'a', MAX_DEPTH as usize));
        p.push(b'.');
        assert_eq!(check(&p), Err(Refused::TooDeep));
        // Just within the bound.
        let mut p = vec![b']'; MAX_DEPTH as usize];
        p.extend(std::iter::repeat_n(b'a', MAX_DEPTH as usize - 1));
        p.push(b'.');
        assert_eq!(check(&p), Ok(()));
    }

    #[test]
    fn memo_expansion_is_bounded() {
        // x = [None]; repeat 40 times: x = [x, x]: 2^40 values from ~200 bytes.
        let mut p = b"]N\x61\x94".to_vec(); // [None], memo 0
        for i in 0..40u8 {
            p.extend_from_slice(b"]h");
            p.push(i);
            p.extend_from_slice(b"ah");
            p.push(i);
            p.extend_from_slice(b"a\x94");
        }
        p.push(b'.');
        assert_eq!(check(&p), Err(Refused::TooLarge));
    }

    #[test]
    fn long_integers_are_refused() {
        let mut p = vec![0x8a, 17];
        p.extend([1u8; 17]);
        p.push(b'.');
        assert_eq!(check(&p), Err(Refused::IntTooLong));
        let mut p = b"L".to_vec();
        p.extend([b'9'; 100]);
        p.extend(b"L\n.");
        assert_eq!(check(&p), Err(Refused::IntTooLong));
        // 2**64 fits.
        assert_eq!(
            check(b"\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01."),
            Ok(())
        );
    }
}
