//! The data directory's `MANIFEST`: what the directory is, so that it is
//! never read as something else.
//!
//! - **The layout** that decides the outcome of commands: the shard count
//!   and the symbols placed on shards, the routing window, the limits
//!   (`orders_max`, `symbols_max`), the instrument list, and the format
//!   version. Written when the directory is created; recovery and every
//!   later run use it, and refuse a configuration that differs.
//! - **The newest segment**: the journal's last file. Updated (durably)
//!   whenever a segment is created, before anything is written into it. A
//!   journal whose newest segment is missing, or whose every segment is, has
//!   lost acknowledged commands, which recovery refuses to hide as a short
//!   journal.
//!
//! A text file, a `key value` pair a line, closed by a CRC32C of everything
//! before it, so an operator can read it and any damage is seen. It is
//! replaced atomically (written to `MANIFEST.tmp`, synced, renamed, the
//! directory synced).

use std::io;

use matching_core::{Seq, Symbol};

use crate::journal::RecoveryError;
use crate::storage::Storage;

/// The manifest's file name in the data directory.
pub const MANIFEST_FILE: &str = "MANIFEST";
const MAGIC: &str = "MXMANIFEST";
/// The manifest's format version.
pub const MANIFEST_VERSION: u32 = 1;

/// Everything that decides the outcome of a command, besides the commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub shards: usize,
    pub orders_max: usize,
    pub symbols_max: usize,
    pub route_window: usize,
    /// Symbols placed on a given shard (the rest go by hash), sorted.
    pub symbol_shards: Vec<(Symbol, usize)>,
    /// The only symbols traded, sorted, or `None` for any.
    pub instruments: Option<Vec<Symbol>>,
}

impl Layout {
    /// The same layout with its lists sorted, so that equal layouts compare equal.
    pub fn normalized(mut self) -> Layout {
        self.symbol_shards.sort_unstable();
        if let Some(listed) = &mut self.instruments {
            listed.sort_unstable();
            listed.dedup();
        }
        self
    }

    /// The first setting in which `self` (what a run asks for) differs from
    /// `stored` (what the directory was made with), as `(name, asked, stored)`.
    pub fn difference(&self, stored: &Layout) -> Option<(&'static str, String, String)> {
        let (a, b) = (self.clone().normalized(), stored.clone().normalized());
        let fields: [(&'static str, String, String); 6] = [
            ("shards", a.shards.to_string(), b.shards.to_string()),
            ("orders_max", a.orders_max.to_string(), b.orders_max.to_string()),
            ("symbols_max", a.symbols_max.to_string(), b.symbols_max.to_string()),
            ("route_window", a.route_window.to_string(), b.route_window.to_string()),
            ("symbol_shards", placement_text(&a.symbol_shards), placement_text(&b.symbol_shards)),
            ("instruments", instruments_text(&a.instruments), instruments_text(&b.instruments)),
        ];
        fields.into_iter().find(|(_, x, y)| x != y)
    }
}

/// What the manifest holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub layout: Layout,
    /// The `first_seq` of the journal's newest segment, once there is one.
    pub newest_segment: Option<Seq>,
}

fn placement_text(placement: &[(Symbol, usize)]) -> String {
    if placement.is_empty() {
        return "-".to_string();
    }
    placement.iter().map(|(symbol, shard)| format!("{symbol}:{shard}")).collect::<Vec<_>>().join(",")
}

fn instruments_text(instruments: &Option<Vec<Symbol>>) -> String {
    match instruments {
        None => "*".to_string(),
        Some(listed) if listed.is_empty() => "-".to_string(),
        Some(listed) => listed.iter().map(Symbol::to_string).collect::<Vec<_>>().join(","),
    }
}

impl Manifest {
    /// The file's text.
    pub fn encode(&self) -> String {
        let layout = self.layout.clone().normalized();
        let mut text = format!(
            "{MAGIC} {MANIFEST_VERSION}\nshards {}\norders_max {}\nsymbols_max {}\nroute_window {}\nsymbol_shards {}\ninstruments {}\nnewest_segment {}\n",
            layout.shards,
            layout.orders_max,
            layout.symbols_max,
            layout.route_window,
            placement_text(&layout.symbol_shards),
            instruments_text(&layout.instruments),
            self.newest_segment.map_or("-".to_string(), |seq| seq.to_string()),
        );
        let crc = crc32c::crc32c(text.as_bytes());
        text.push_str(&format!("crc32c {crc:08x}\n"));
        text
    }

    /// Reads a manifest's text; `Err` says what is wrong with it.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_string())?;
        let crc_at = text.rfind("crc32c ").ok_or("no checksum line")?;
        let (body, crc_line) = text.split_at(crc_at);
        if crc_line != format!("crc32c {:08x}\n", crc32c::crc32c(body.as_bytes())) {
            return Err("checksum mismatch".to_string());
        }
        let mut lines = body.lines();
        match lines.next().and_then(|l| l.split_once(' ')) {
            Some((MAGIC, version)) if version == MANIFEST_VERSION.to_string() => {}
            Some((MAGIC, version)) => return Err(format!("unsupported manifest version {version}")),
            _ => return Err("not a manifest".to_string()),
        }
        let mut fields = std::collections::BTreeMap::new();
        for line in lines {
            let (key, value) = line.split_once(' ').ok_or_else(|| format!("unreadable line {line:?}"))?;
            fields.insert(key, value);
        }
        let field = |key: &str| fields.get(key).copied().ok_or_else(|| format!("no {key}"));
        let number =
            |key: &str| -> Result<usize, String> { field(key)?.parse().map_err(|_| format!("{key} is not a number")) };
        let symbol = |name: &str| Symbol::new(name).ok_or_else(|| format!("{name:?} is not a symbol"));
        let symbol_shards = match field("symbol_shards")? {
            "-" => Vec::new(),
            list => list
                .split(',')
                .map(|pair| {
                    let (name, shard) = pair.split_once(':').ok_or("unreadable symbol_shards")?;
                    Ok((symbol(name)?, shard.parse().map_err(|_| "unreadable symbol_shards")?))
                })
                .collect::<Result<_, String>>()?,
        };
        let instruments = match field("instruments")? {
            "*" => None,
            "-" => Some(Vec::new()),
            list => Some(list.split(',').map(symbol).collect::<Result<_, String>>()?),
        };
        let newest_segment = match field("newest_segment")? {
            "-" => None,
            seq => Some(seq.parse().map_err(|_| "newest_segment is not a number")?),
        };
        Ok(Manifest {
            layout: Layout {
                shards: number("shards")?,
                orders_max: number("orders_max")?,
                symbols_max: number("symbols_max")?,
                route_window: number("route_window")?,
                symbol_shards,
                instruments,
            },
            newest_segment,
        })
    }
}

/// The directory's manifest: `Ok(None)` when it has none (a new directory,
/// or one written before manifests); a manifest that is there but does not
/// decode is corruption.
pub fn read_manifest(storage: &dyn Storage) -> Result<Option<Manifest>, RecoveryError> {
    if !storage.list()?.iter().any(|name| name == MANIFEST_FILE) {
        return Ok(None);
    }
    let bytes = storage.read(MANIFEST_FILE)?;
    Manifest::decode(&bytes).map(Some).map_err(|reason| RecoveryError::Corruption {
        file: storage.describe(MANIFEST_FILE),
        offset: 0,
        reason,
    })
}

/// Replaces the directory's manifest atomically and durably.
pub fn write_manifest(storage: &dyn Storage, manifest: &Manifest) -> io::Result<()> {
    let tmp = format!("{MANIFEST_FILE}.tmp");
    let mut file = storage.create(&tmp)?;
    file.write_all(manifest.encode().as_bytes())?;
    file.sync_data()?;
    storage.rename(&tmp, MANIFEST_FILE)?;
    storage.sync_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let s = |n| Symbol::new(n).unwrap();
        Manifest {
            layout: Layout {
                shards: 4,
                orders_max: 50,
                symbols_max: 7,
                route_window: 100,
                symbol_shards: vec![(s("ETH"), 1), (s("BTC"), 3)],
                instruments: Some(vec![s("ETH"), s("BTC")]),
            },
            newest_segment: Some(12_345),
        }
    }

    #[test]
    fn a_manifest_round_trips_and_damage_is_seen() {
        let manifest = sample();
        let text = manifest.encode();
        let back = Manifest::decode(text.as_bytes()).unwrap();
        assert_eq!(back.layout, manifest.layout.clone().normalized());
        assert_eq!(back.newest_segment, Some(12_345));
        let open = Manifest {
            layout: Layout { instruments: None, symbol_shards: vec![], ..sample().layout },
            newest_segment: None,
        };
        assert_eq!(Manifest::decode(open.encode().as_bytes()).unwrap(), open);
        for at in 0..text.len() {
            let mut damaged = text.clone().into_bytes();
            damaged[at] ^= 0x20;
            assert!(Manifest::decode(&damaged).is_err(), "a flipped byte at {at} went unnoticed");
        }
    }

    #[test]
    fn the_first_difference_is_named() {
        let stored = sample().layout;
        let asked = Layout { orders_max: 60, ..stored.clone() };
        assert_eq!(asked.difference(&stored), Some(("orders_max", "60".to_string(), "50".to_string())));
        let reordered =
            Layout { symbol_shards: stored.symbol_shards.iter().rev().cloned().collect(), ..stored.clone() };
        assert_eq!(reordered.difference(&stored), None);
    }
}
