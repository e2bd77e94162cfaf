//! Redis Cluster without I/O: which hash slot a key is in, which node owns
//! each slot (the `CLUSTER SLOTS` reply read into a [`SlotTable`]), and the
//! `-MOVED` / `-ASK` redirections a node answers for a slot it does not
//! serve, as the cluster specification defines them.
//!
//! The blocking client (`blocking/cluster.rs`) does the sending; this file
//! only reads and computes, so every rule here is unit-tested on bytes.

use super::StoreUrl;

/// The number of hash slots of a Redis Cluster.
pub const SLOTS: usize = 16384;

/// The hash slot of `key`: CRC16 (XMODEM) of the key, or of its hash tag
/// (the text between the first `{` and the first `}` after it, when not
/// empty), modulo 16384.
pub fn slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(hashed) % SLOTS as u16
}

/// CRC16/XMODEM: polynomial 0x1021, initial value 0, not reflected.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Which master serves each slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotTable {
    /// The masters, each once (database 0).
    nodes: Vec<StoreUrl>,
    /// Per slot, an index into `nodes`, or [`NO_NODE`].
    owners: Vec<u16>,
}

const NO_NODE: u16 = u16::MAX;

impl SlotTable {
    /// Reads a `CLUSTER SLOTS` reply (one whole RESP reply), asked of the
    /// node at `asked`: an entry's empty host means that node's own.
    pub fn parse(reply: &[u8], asked: &StoreUrl) -> Result<SlotTable, String> {
        let (value, _) = Value::parse(reply, 0)?;
        let Value::Array(ranges) = value else {
            return Err(match value {
                Value::Error(text) => format!("CLUSTER SLOTS answered {text}"),
                _ => "CLUSTER SLOTS answered something that is not an array".into(),
            });
        };
        let mut table = SlotTable {
            nodes: Vec::new(),
            owners: vec![NO_NODE; SLOTS],
        };
        for range in ranges {
            let Value::Array(fields) = range else {
                return Err("a CLUSTER SLOTS entry is not an array".into());
            };
            let (Some(Value::Int(first)), Some(Value::Int(last)), Some(master)) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                return Err("a CLUSTER SLOTS entry lacks its range or its master".into());
            };
            if !(0 <= *first && first <= last && *last < SLOTS as i64) {
                return Err(format!(
                    "a CLUSTER SLOTS range {first}-{last} out of 0-16383"
                ));
            }
            let node = node_of(master, asked)?;
            let index = match table.nodes.iter().position(|known| *known == node) {
                Some(index) => index,
                None => {
                    table.nodes.push(node);
                    table.nodes.len() - 1
                }
            };
            table.owners[*first as usize..=*last as usize].fill(index as u16);
        }
        Ok(table)
    }

    /// The master serving `slot`, if any.
    pub fn owner(&self, slot: u16) -> Option<&StoreUrl> {
        let index = *self.owners.get(usize::from(slot))?;
        self.nodes.get(usize::from(index))
    }

    /// Every master, each once.
    pub fn nodes(&self) -> &[StoreUrl] {
        &self.nodes
    }

    /// `slot` is served by `node` now (a `-MOVED` said so).
    pub fn moved(&mut self, slot: u16, node: StoreUrl) {
        let index = match self.nodes.iter().position(|known| *known == node) {
            Some(index) => index,
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        };
        if let Some(owner) = self.owners.get_mut(usize::from(slot)) {
            *owner = index as u16;
        }
    }

    /// The slots no master serves, as ranges `(first, last)`.
    pub fn uncovered(&self) -> Vec<(u16, u16)> {
        let mut ranges: Vec<(u16, u16)> = Vec::new();
        for (slot, _) in (0u16..).zip(&self.owners).filter(|(_, o)| **o == NO_NODE) {
            match ranges.last_mut() {
                Some((_, last)) if *last + 1 == slot => *last = slot,
                _ => ranges.push((slot, slot)),
            }
        }
        ranges
    }
}

/// The node of a `[host, port, id, ...]` entry.
fn node_of(entry: &Value<'_>, asked: &StoreUrl) -> Result<StoreUrl, String> {
    let Value::Array(fields) = entry else {
        return Err("a CLUSTER SLOTS node is not an array".into());
    };
    let (Some(Value::Bulk(host)), Some(Value::Int(port))) = (fields.first(), fields.get(1)) else {
        return Err("a CLUSTER SLOTS node lacks its host or port".into());
    };
    let port = u16::try_from(*port)
        .ok()
        .filter(|&port| port != 0)
        .ok_or_else(|| format!("a CLUSTER SLOTS node on port {port}"))?;
    node_at(host, port, asked)
}

/// The node at `host:port`; an empty host (or `?`) is `asked`'s host.
fn node_at(host: &[u8], port: u16, asked: &StoreUrl) -> Result<StoreUrl, String> {
    let host = match host {
        b"" | b"?" => asked.host.clone(),
        host => std::str::from_utf8(host)
            .map_err(|_| {
                format!(
                    "a node host {:?} not UTF-8",
                    host.escape_ascii().to_string()
                )
            })?
            .to_owned(),
    };
    Ok(StoreUrl { host, port, db: 0 })
}

/// The masters a `CLUSTER NODES` reply (asked of `asked`) lists, with
/// slots or none yet (one a slot is migrating to), failing or not: a
/// redirection is followed only to a node of the cluster, never to an
/// address a script's error reply made up.
pub fn masters(reply: &[u8], asked: &StoreUrl) -> Result<Vec<StoreUrl>, String> {
    let (value, _) = Value::parse(reply, 0)?;
    let Value::Bulk(text) = value else {
        return Err("CLUSTER NODES answered something that is not a bulk string".into());
    };
    let mut masters = Vec::new();
    for line in text.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
        let mut fields = line.split(|&b| b == b' ').skip(1);
        let (Some(address), Some(flags)) = (fields.next(), fields.next()) else {
            return Err("a CLUSTER NODES line without an address or flags".into());
        };
        if !flags.split(|&b| b == b',').any(|flag| flag == b"master") {
            continue;
        }
        // `host:port@bus[,hostname]`.
        let address = address.split(|&b| b == b'@').next().unwrap_or_default();
        let Some(colon) = address.iter().rposition(|&b| b == b':') else {
            return Err("a CLUSTER NODES address without a port".into());
        };
        let port = std::str::from_utf8(&address[colon + 1..])
            .ok()
            .and_then(|port| port.parse::<u16>().ok())
            .ok_or("a CLUSTER NODES address without a port")?;
        masters.push(node_at(&address[..colon], port, asked)?);
    }
    Ok(masters)
}

/// A node's answer for a slot it does not serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// `-MOVED slot host:port`: the slot is served there now, for good.
    Moved {
        /// The slot.
        slot: u16,
        /// Its master now.
        node: StoreUrl,
    },
    /// `-ASK slot host:port`: the slot is migrating there; ask that node
    /// once, after `ASKING`, and keep the table as it is.
    Ask {
        /// The slot.
        slot: u16,
        /// The node it is migrating to.
        node: StoreUrl,
    },
}

/// The first redirection among the `count` whole replies in `replies`
/// (answered by the node at `asked`), if any.
pub fn redirect(replies: &[u8], count: usize, asked: &StoreUrl) -> Option<Redirect> {
    let mut rest = replies;
    for _ in 0..count {
        let end = super::reply::len(rest, 1).ok()??;
        let (reply, after) = rest.split_at(end);
        if let Some(found) = parse_redirect(reply, asked) {
            return Some(found);
        }
        rest = after;
    }
    None
}

/// `-MOVED 3999 127.0.0.1:6381\r\n` or `-ASK ...`; anything else is `None`.
fn parse_redirect(reply: &[u8], asked: &StoreUrl) -> Option<Redirect> {
    let line = reply.strip_prefix(b"-")?.strip_suffix(b"\r\n")?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split(' ');
    let kind = words.next()?;
    let slot: u16 = words
        .next()?
        .parse()
        .ok()
        .filter(|&s| usize::from(s) < SLOTS)?;
    let (host, port) = words.next()?.rsplit_once(':')?;
    if words.next().is_some() {
        return None;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
    let node = node_at(host.as_bytes(), port, asked).ok()?;
    match kind {
        "MOVED" => Some(Redirect::Moved { slot, node }),
        "ASK" => Some(Redirect::Ask { slot, node }),
        _ => None,
    }
}

/// Just enough of RESP2 to read `CLUSTER SLOTS`: nesting is bounded.
#[derive(Debug)]
enum Value<'a> {
    Array(Vec<Value<'a>>),
    Bulk(&'a [u8]),
    Int(i64),
    Error(String),
    Other,
}

/// CLUSTER SLOTS nests four deep (reply, range, node, node metadata).
const MAX_DEPTH: usize = 5;

impl<'a> Value<'a> {
    /// The value at the front of `buf` and the bytes after it.
    fn parse(buf: &'a [u8], depth: usize) -> Result<(Value<'a>, &'a [u8]), String> {
        if depth > MAX_DEPTH {
            return Err("CLUSTER SLOTS nests too deep".into());
        }
        let cut = || "CLUSTER SLOTS reply cut short".to_string();
        let end = buf.windows(2).position(|w| w == b"\r\n").ok_or_else(cut)?;
        let (line, rest) = (&buf[..end], &buf[end + 2..]);
        let (&kind, text) = line.split_first().ok_or("an empty line in CLUSTER SLOTS")?;
        let number = || -> Result<i64, String> {
            std::str::from_utf8(text)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| format!("{:?} is not a number", text.escape_ascii().to_string()))
        };
        match kind {
            b':' => Ok((Value::Int(number()?), rest)),
            b'-' => Ok((Value::Error(text.escape_ascii().to_string()), rest)),
            b'+' => Ok((Value::Other, rest)),
            b'$' => {
                let Ok(len) = usize::try_from(number()?) else {
                    return Ok((Value::Other, rest));
                };
                let bulk = rest.get(..len).ok_or_else(cut)?;
                let after = rest.get(len + 2..).ok_or_else(cut)?;
                Ok((Value::Bulk(bulk), after))
            }
            b'*' => {
                let Ok(count) = usize::try_from(number()?) else {
                    return Ok((Value::Other, rest));
                };
                let mut items = Vec::with_capacity(count.min(1024));
                let mut rest = rest;
                for _ in 0..count {
                    let (item, after) = Value::parse(rest, depth + 1)?;
                    items.push(item);
                    rest = after;
                }
                Ok((Value::Array(items), rest))
            }
            other => Err(format!(
                "an unexpected type byte {:?} in CLUSTER SLOTS",
                char::from(other).escape_default().to_string()
            )),
        }
    }
}

#[cfg(test)]
mod tests;
