//! `serve`'s configuration: the schema of its TOML file ([`ServeFile`]), and
//! how the layers make one ([`resolve`]):
//!
//! ```text
//! defaults  <  file (--config FILE)  <  environment (ME_…)  <  flags
//! ```
//!
//! Each layer is a TOML table; they are merged key by key (a table into a
//! table merges, anything else replaces), remembering which layer set each
//! leaf, and the result is deserialized once. So a refusal names the key
//! (`limits.frame_bytes`) and where its value came from (`file serve.toml`,
//! `environment ME_LIMITS_FRAME_BYTES`, `flag --frame-bytes`). Keys absent
//! from every layer take the schema's defaults, most of them the server's
//! own (`Limits::default()`, `MdConfig::default()`).
//!
//! An environment variable is `ME_` and the key's path, `.` as `_`,
//! uppercased: `ME_DATA_DIR`, `ME_LIMITS_FRAME_BYTES`, `ME_MARKET_DATA_QUEUE`.
//! Its value is read as a TOML value when it is one (`5`, `true`,
//! `["127.0.0.1:7710"]`), else as a string (`127.0.0.1:7700`, `batch`).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use matching_core::Symbol;
use matching_pipeline::{Durability, EngineConfig, FsyncPolicy, SHARDS_MAX, WaitStrategy};
use serde::{Deserialize, Serialize};

use crate::{Instrument, Limits, METRICS_ADDR, MdConfig};

/// `serve`'s whole configuration, as its file writes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeFile {
    /// The data directory (journal and snapshots): recovered at start,
    /// created if missing.
    pub data_dir: PathBuf,
    /// Who may log in; absent: an open development mode, on loopback only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<PathBuf>,
    pub network: NetworkSection,
    pub journal: JournalSection,
    pub engine: EngineSection,
    pub limits: LimitsSection,
    pub market_data: MarketDataSection,
    pub fix: FixSection,
    pub log: LogSection,
    /// The only symbols traded, with their tick and lot; absent: the data
    /// directory's list, else any symbol.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instruments: Option<Vec<ListedInstrument>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSection {
    /// The binary protocol (SoupBinTCP-style).
    pub binary_addr: SocketAddr,
    /// Newline-delimited JSON over TCP.
    pub json_addr: SocketAddr,
    /// HTTP: the WebSocket JSON API at `/ws`, and the public channels.
    pub http_addr: SocketAddr,
    /// Metrics, health and the operator console, over HTTP.
    pub metrics_addr: SocketAddr,
    /// Tokio worker threads (the engine's threads come on top).
    pub io_threads: usize,
    /// Serve the web page from this directory instead of the copy built
    /// into the binary (for working on the page); absent: the built-in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_dir: Option<PathBuf>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalSection {
    /// When the journal syncs: `off` (benchmarks only), `batch`, `always`.
    #[serde(with = "FsyncPolicyName")]
    pub fsync: FsyncPolicy,
    /// Most bytes written per group commit; absent: the engine's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_bytes_max: Option<usize>,
    /// Microseconds a group may wait for more records before it syncs;
    /// absent: the engine's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_linger_us: Option<u64>,
    /// Bytes a journal segment grows to before the next starts; absent:
    /// the engine's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment_bytes: Option<u64>,
    /// Seconds between snapshots while serving (0: only at a clean stop).
    pub snapshot_interval_s: u64,
}

/// The engine's layout (`shards` .. `symbol_shards`: absent, the data
/// directory's, else the engine's default) and how its threads run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orders_max: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbols_max: Option<usize>,
    /// How engine threads wait for work: `busy-spin`, `spin-yield`, `park`.
    #[serde(with = "WaitStrategyName")]
    pub wait: WaitStrategy,
    /// Pin each shard thread to its own core.
    pub pin_cores: bool,
    /// Symbols placed on a given shard (the rest go by hash).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol_shards: Option<Vec<SymbolShard>>,
}

/// `Limits`, as the file writes them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    pub frame_bytes: usize,
    pub connections: usize,
    pub in_flight: usize,
    pub outbox: usize,
    pub rate_per_s: u32,
    pub resume_events: usize,
    pub login_timeout_s: f64,
}

/// `MdConfig`, as the file writes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarketDataSection {
    /// `false`: no feed, and the public channels are refused.
    pub enabled: bool,
    pub feed_addrs: Vec<SocketAddr>,
    pub rerequest_addr: SocketAddr,
    pub snapshot_addr: SocketAddr,
    pub heartbeat_ms: u64,
    pub window: usize,
    pub queue: usize,
}

/// The FIX 4.4 gateway (`docs/FIX.md`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FixSection {
    /// `false`: no FIX gateway.
    pub enabled: bool,
    pub addr: SocketAddr,
    /// Application messages each session keeps for resend requests (older
    /// ones are gap-filled).
    pub store_capacity: usize,
}

impl Default for FixSection {
    fn default() -> FixSection {
        FixSection { enabled: true, addr: SocketAddr::from(([127, 0, 0, 1], 7703)), store_capacity: 100_000 }
    }
}

impl FixSection {
    /// `None` when the gateway is off; its stores go under `data_dir/fix`.
    pub fn config(&self, data_dir: &Path) -> Option<crate::FixConfig> {
        self.enabled.then(|| crate::FixConfig {
            addr: self.addr,
            store_dir: data_dir.join("fix"),
            store_capacity: self.store_capacity,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    pub format: LogFormat,
    pub level: LogLevel,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// One `[[instruments]]` entry.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListedInstrument {
    #[serde(with = "symbol_name")]
    pub symbol: Symbol,
    /// Prices are multiples of it.
    #[serde(default = "one")]
    pub tick: u64,
    /// Quantities are multiples of it.
    #[serde(default = "one")]
    pub lot: u64,
}

/// One `engine.symbol_shards` entry.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymbolShard {
    #[serde(with = "symbol_name")]
    pub symbol: Symbol,
    pub shard: usize,
}

fn one() -> u64 {
    1
}

impl Default for ServeFile {
    fn default() -> ServeFile {
        ServeFile {
            data_dir: PathBuf::from("./data"),
            users: None,
            network: NetworkSection::default(),
            journal: JournalSection::default(),
            engine: EngineSection::default(),
            limits: LimitsSection::default(),
            market_data: MarketDataSection::default(),
            fix: FixSection::default(),
            log: LogSection::default(),
            instruments: None,
        }
    }
}

impl Default for NetworkSection {
    fn default() -> NetworkSection {
        NetworkSection {
            binary_addr: SocketAddr::from(([127, 0, 0, 1], 7700)),
            json_addr: SocketAddr::from(([127, 0, 0, 1], 7701)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_addr: METRICS_ADDR,
            io_threads: 1,
            web_dir: None,
        }
    }
}

impl Default for EngineSection {
    fn default() -> EngineSection {
        EngineSection {
            shards: None,
            orders_max: None,
            symbols_max: None,
            // A server is mostly idle between bursts: sleep rather than spin.
            wait: WaitStrategy::Park,
            pin_cores: EngineConfig::default().pin_cores,
            symbol_shards: None,
        }
    }
}

impl Default for LimitsSection {
    fn default() -> LimitsSection {
        let limits = Limits::default();
        LimitsSection {
            frame_bytes: limits.frame_bytes,
            connections: limits.connections,
            in_flight: limits.in_flight,
            outbox: limits.outbox,
            rate_per_s: limits.rate_per_s,
            resume_events: limits.resume_events,
            login_timeout_s: limits.login_timeout.as_secs_f64(),
        }
    }
}

impl Default for MarketDataSection {
    fn default() -> MarketDataSection {
        let md = MdConfig::default();
        MarketDataSection {
            enabled: true,
            feed_addrs: md.feed_addrs,
            rerequest_addr: md.rerequest_addr,
            snapshot_addr: md.snapshot_addr,
            heartbeat_ms: md.heartbeat.as_millis() as u64,
            window: md.window,
            queue: md.queue,
        }
    }
}

impl Default for LogSection {
    fn default() -> LogSection {
        LogSection { format: LogFormat::Text, level: LogLevel::Info }
    }
}

/// `FsyncPolicy` by its command-line names.
#[derive(Serialize, Deserialize)]
#[serde(remote = "FsyncPolicy", rename_all = "kebab-case")]
enum FsyncPolicyName {
    Batch,
    Always,
    Off,
}

/// `WaitStrategy` by its command-line names.
#[derive(Serialize, Deserialize)]
#[serde(remote = "WaitStrategy", rename_all = "kebab-case")]
enum WaitStrategyName {
    BusySpin,
    SpinYield,
    Park,
}

/// A `Symbol` as its name, refused unless it is one.
mod symbol_name {
    use matching_core::Symbol;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(symbol: &Symbol, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(symbol.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Symbol, D::Error> {
        let name = String::deserialize(deserializer)?;
        Symbol::new(&name)
            .ok_or_else(|| D::Error::custom(format!("{name:?} is not a symbol (1 to 32 of A-Za-z0-9._/-)")))
    }
}

impl ServeFile {
    /// The effective configuration as a TOML file, for `serve --print-config`.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        let body =
            toml::to_string(self).map_err(|error| ConfigError(format!("cannot write the configuration: {error}")))?;
        Ok(format!(
            "# matching-engine serve: the effective configuration (docs/OPERATIONS.md).\n\
             # Absent: users (open mode), engine.shards, orders_max, symbols_max, symbol_shards\n\
             # and [[instruments]] (the data directory's, else the engine's defaults).\n\n{body}"
        ))
    }

    /// The listed symbols' tick and lot sizes (none when there is no list).
    pub fn instruments(&self) -> Vec<Instrument> {
        let listed = self.instruments.iter().flatten();
        listed.map(|i| Instrument { symbol: i.symbol, tick: i.tick, lot: i.lot }).collect()
    }

    /// The first setting out of its range, as `(key, why)`: refused, where
    /// the flags of old clamped it.
    fn check(&self) -> Result<(), (String, String)> {
        let (limits, md) = (&self.limits, &self.market_data);
        at_least("network.io_threads", self.network.io_threads, 1)?;
        if let Some(shards) = self.engine.shards {
            within("engine.shards", shards, 1, SHARDS_MAX)?;
        }
        at_least("limits.connections", limits.connections, 1)?;
        at_least("limits.in_flight", limits.in_flight, 1)?;
        at_least("limits.outbox", limits.outbox, 16)?;
        at_least("limits.rate_per_s", limits.rate_per_s, 1)?;
        within("limits.login_timeout_s", limits.login_timeout_s, 0.001, 3600.0)?;
        within("market_data.heartbeat_ms", md.heartbeat_ms, 1, 60_000)?;
        at_least("market_data.queue", md.queue, 16)?;
        at_least("fix.store_capacity", self.fix.store_capacity, 1)?;
        let listed = self.instruments.as_deref().unwrap_or_default();
        for (index, instrument) in listed.iter().enumerate() {
            at_least(&format!("instruments[{index}].tick"), instrument.tick, 1)?;
            at_least(&format!("instruments[{index}].lot"), instrument.lot, 1)?;
            if listed[..index].iter().any(|earlier| earlier.symbol == instrument.symbol) {
                let why = format!("{} is listed twice", instrument.symbol);
                return Err((format!("instruments[{index}].symbol"), why));
            }
        }
        Ok(())
    }
}

fn at_least<T: PartialOrd + fmt::Display>(key: &str, value: T, min: T) -> Result<(), (String, String)> {
    if value >= min { Ok(()) } else { Err((key.to_string(), format!("must be at least {min}, not {value}"))) }
}

fn within<T: PartialOrd + fmt::Display>(key: &str, value: T, min: T, max: T) -> Result<(), (String, String)> {
    if min <= value && value <= max {
        Ok(())
    } else {
        Err((key.to_string(), format!("must be in {min}..={max}, not {value}")))
    }
}

impl JournalSection {
    /// `base` (the engine's defaults and the storage) with this section's settings.
    pub fn durability(&self, base: Durability) -> Durability {
        Durability {
            fsync: self.fsync,
            group_bytes_max: self.group_bytes_max.unwrap_or(base.group_bytes_max),
            group_linger: self.group_linger_us.map_or(base.group_linger, Duration::from_micros),
            segment_bytes: self.segment_bytes.unwrap_or(base.segment_bytes),
            ..base
        }
    }

    /// `None`: a snapshot only at a clean stop.
    pub fn snapshot_interval(&self) -> Option<Duration> {
        (self.snapshot_interval_s > 0).then(|| Duration::from_secs(self.snapshot_interval_s))
    }
}

impl LimitsSection {
    pub fn limits(&self) -> Limits {
        Limits {
            frame_bytes: self.frame_bytes,
            connections: self.connections,
            in_flight: self.in_flight,
            outbox: self.outbox,
            rate_per_s: self.rate_per_s,
            resume_events: self.resume_events,
            login_timeout: Duration::from_secs_f64(self.login_timeout_s),
            ..Limits::default()
        }
    }
}

impl MarketDataSection {
    /// `None` when market data is off.
    pub fn config(&self) -> Option<MdConfig> {
        self.enabled.then(|| MdConfig {
            feed_addrs: self.feed_addrs.clone(),
            rerequest_addr: self.rerequest_addr,
            snapshot_addr: self.snapshot_addr,
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            window: self.window,
            queue: self.queue,
            ..MdConfig::default()
        })
    }
}

/// Why the configuration was refused: names the key and the layer it came from.
#[derive(Debug)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The flags layer: each setting a flag gave, with the flag's name.
#[derive(Default)]
pub struct Flags(Vec<(String, String, Result<toml::Value, String>)>);

impl Flags {
    /// `key` (a path, `limits.frame_bytes`) was given as `flag`
    /// (`--frame-bytes`), if `value` is `Some`.
    pub fn set<T: Serialize>(&mut self, key: &str, flag: &str, value: Option<T>) -> &mut Flags {
        if let Some(value) = value {
            let value = toml::Value::try_from(value).map_err(|error| error.to_string());
            self.0.push((key.to_string(), flag.to_string(), value));
        }
        self
    }
}

/// The configuration of the `file` (if any), the environment `env` (its
/// `ME_` variables) and the `flags`, each over the one before, and over the
/// defaults. Refuses, naming the key and its layer, an unknown key, a bad
/// value and a setting out of its range.
pub fn resolve(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (OsString, OsString)>,
    flags: Flags,
) -> Result<ServeFile, ConfigError> {
    let file = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|error| ConfigError(format!("cannot read {}: {error}", path.display())))?;
            Some((path.display().to_string(), text))
        }
        None => None,
    };
    resolve_text(file.as_ref().map(|(name, text)| (name.as_str(), text.as_str())), env, flags)
}

/// [`resolve`], the file given as its name and text.
fn resolve_text(
    file: Option<(&str, &str)>,
    env: impl IntoIterator<Item = (OsString, OsString)>,
    flags: Flags,
) -> Result<ServeFile, ConfigError> {
    // Each layer as (who, table), in order of precedence.
    let mut layers = Vec::new();
    if let Some((name, text)) = file {
        let table = text.parse::<toml::Table>().map_err(|error| ConfigError(format!("{name}: {error}")))?;
        layers.push((format!("file {name}"), table));
    }
    let sections = sections();
    let mut vars = BTreeMap::new();
    for (name, value) in env {
        let Some(name) = name.to_str().filter(|name| name.starts_with("ME_")).map(str::to_string) else { continue };
        let value = value.into_string().map_err(|_| ConfigError(format!("environment {name}: not UTF-8")))?;
        vars.insert(name, value);
    }
    for (name, value) in vars {
        let key = env_key(&sections, &name);
        // A TOML value if it is one (5, true, [..]), else the text itself.
        let value = value.parse::<toml::Value>().unwrap_or(toml::Value::String(value));
        layers.push((format!("environment {name}"), nested(&key, value)));
    }
    for (key, flag, value) in flags.0 {
        let value = value.map_err(|error| ConfigError(format!("flag {flag}: {error}")))?;
        layers.push((format!("flag {flag}"), nested(&key, value)));
    }

    let mut merged = toml::Table::new();
    let mut origins = BTreeMap::new();
    for (origin, table) in layers {
        merge(&mut merged, table, "", &origin, &mut origins);
    }
    let refuse =
        |key: &str, why: &dyn fmt::Display| ConfigError(format!("{key}: {why} (from {})", origin_of(&origins, key)));
    let config: ServeFile = serde_path_to_error::deserialize(merged)
        .map_err(|error| refuse(&error.path().to_string(), &error.inner().message()))?;
    config.check().map_err(|(key, why)| refuse(&key, &why))?;
    Ok(config)
}

/// Lays `over` onto `under`, key by key: a table onto a table merges,
/// anything else replaces what was there. `origins` maps the path of every
/// leaf set to who set it (`origin`).
fn merge(
    under: &mut toml::Table,
    over: toml::Table,
    prefix: &str,
    origin: &str,
    origins: &mut BTreeMap<String, String>,
) {
    for (key, value) in over {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match value {
            toml::Value::Table(over) => {
                // A table replaces a leaf, and merges into a table.
                if !under.get(&key).is_some_and(toml::Value::is_table) {
                    origins.remove(&path);
                    under.insert(key.clone(), toml::Value::Table(toml::Table::new()));
                }
                if let Some(toml::Value::Table(under)) = under.get_mut(&key) {
                    merge(under, over, &path, origin, origins);
                }
            }
            leaf => {
                // It replaces whatever was at `path`, a table with its leaves too.
                let below = format!("{path}.");
                origins.retain(|set, _| !set.starts_with(&below));
                origins.insert(path, origin.to_string());
                under.insert(key, leaf);
            }
        }
    }
}

/// Who set `key` (a path as serde_path_to_error writes it: `a.b`, `a[2].b`):
/// the layer of the nearest leaf at or above it (an array is one leaf).
fn origin_of<'a>(origins: &'a BTreeMap<String, String>, key: &str) -> &'a str {
    let mut path = key.split('[').next().unwrap_or(key);
    loop {
        if let Some(origin) = origins.get(path) {
            return origin;
        }
        match path.rsplit_once('.') {
            Some((parent, _)) => path = parent,
            None => return "the defaults",
        }
    }
}

/// The sections of the schema: the tables of the defaults.
fn sections() -> Vec<String> {
    let defaults = toml::Table::try_from(ServeFile::default()).expect("the defaults are a TOML table");
    defaults.into_iter().filter(|(_, value)| value.is_table()).map(|(name, _)| name).collect()
}

/// The key an `ME_` variable names: `ME_LIMITS_FRAME_BYTES` is
/// `limits.frame_bytes` (a section's name first), `ME_DATA_DIR` `data_dir`.
fn env_key(sections: &[String], name: &str) -> String {
    let key = name.strip_prefix("ME_").unwrap_or(name).to_ascii_lowercase();
    let in_section = |section: &String| {
        let rest = key.strip_prefix(section.as_str())?.strip_prefix('_')?;
        Some(format!("{section}.{rest}"))
    };
    sections.iter().find_map(in_section).unwrap_or(key)
}

/// `value` at the path `key` (`limits.frame_bytes`) of a new table.
fn nested(key: &str, value: toml::Value) -> toml::Table {
    let (parents, leaf) = key.rsplit_once('.').map_or(("", key), |(parents, leaf)| (parents, leaf));
    let mut table = toml::Table::from_iter([(leaf.to_string(), value)]);
    for parent in parents.rsplit('.').filter(|parent| !parent.is_empty()) {
        table = toml::Table::from_iter([(parent.to_string(), toml::Value::Table(table))]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        vars.iter().map(|(name, value)| (OsString::from(name), OsString::from(value))).collect()
    }

    fn flags(set: &[(&str, &str, toml::Value)]) -> Flags {
        let mut flags = Flags::default();
        for (key, flag, value) in set {
            flags.set(key, flag, Some(value.clone()));
        }
        flags
    }

    fn resolved(file: &str, vars: &[(&str, &str)], set: &[(&str, &str, toml::Value)]) -> Result<ServeFile, String> {
        resolve_text(Some(("serve.toml", file)), env(vars), flags(set)).map_err(|error| error.to_string())
    }

    #[test]
    fn config_precedence_default_file_env_flag() {
        let frame = |config: Result<ServeFile, String>| config.unwrap().limits.frame_bytes;
        let file = "[limits]\nframe_bytes = 1000\n";
        let var = [("ME_LIMITS_FRAME_BYTES", "2000")];
        let flag = [("limits.frame_bytes", "--frame-bytes", toml::Value::Integer(3000))];
        assert_eq!(frame(resolved("", &[], &[])), Limits::default().frame_bytes);
        assert_eq!(frame(resolved(file, &[], &[])), 1000);
        assert_eq!(frame(resolved(file, &var, &[])), 2000);
        assert_eq!(frame(resolved(file, &var, &flag)), 3000);
        assert_eq!(frame(resolved("", &[], &flag)), 3000);
    }

    #[test]
    fn config_nested_tables_merge_key_by_key() {
        let file = "[limits]\nframe_bytes = 1000\nconnections = 7\n[network]\nio_threads = 3\n";
        let config = resolved(file, &[("ME_LIMITS_CONNECTIONS", "8")], &[]).unwrap();
        assert_eq!(config.limits.frame_bytes, 1000, "the file's sibling stays");
        assert_eq!(config.limits.connections, 8);
        assert_eq!(config.limits.outbox, Limits::default().outbox, "unset: the default");
        assert_eq!(config.network.io_threads, 3);
    }

    #[test]
    fn config_unknown_key_in_file_refused() {
        let error = resolved("[limits]\nframe_byte = 1000\n", &[], &[]).unwrap_err();
        assert!(error.contains("limits.frame_byte") && error.contains("file serve.toml"), "{error}");
        let error = resolved("bogus = 1\n", &[], &[]).unwrap_err();
        assert!(error.starts_with("bogus: unknown field"), "{error}");
    }

    #[test]
    fn config_bad_value_names_key_and_layer() {
        let error = resolved("[network]\nbinary_addr = \"nowhere\"\n", &[], &[]).unwrap_err();
        assert!(error.starts_with("network.binary_addr: ") && error.ends_with("(from file serve.toml)"), "{error}");
        let error = resolved("", &[("ME_LIMITS_FRAME_BYTES", "big")], &[]).unwrap_err();
        assert!(error.contains("limits.frame_bytes") && error.contains("environment ME_LIMITS_FRAME_BYTES"), "{error}");
        let error = resolved("", &[], &[("journal.fsync", "--fsync", "sometimes".into())]).unwrap_err();
        assert!(error.contains("journal.fsync") && error.contains("flag --fsync"), "{error}");
        // Out of range: refused, not clamped.
        let error = resolved("[limits]\nconnections = 0\n", &[], &[]).unwrap_err();
        assert_eq!(error, "limits.connections: must be at least 1, not 0 (from file serve.toml)");
        let error = resolved("[[instruments]]\nsymbol = \"BTC-USD\"\nlot = 0\n", &[], &[]).unwrap_err();
        assert_eq!(error, "instruments[0].lot: must be at least 1, not 0 (from file serve.toml)");
        let error = resolved("[[instruments]]\nsymbol = \"BTC USD\"\n", &[], &[]).unwrap_err();
        assert!(error.starts_with("instruments[0].symbol: \"BTC USD\" is not a symbol"), "{error}");
    }

    #[test]
    fn config_syntax_error_names_file_and_line() {
        let error = resolved("[limits]\nframe_bytes = = 3\n", &[], &[]).unwrap_err();
        assert!(error.starts_with("serve.toml: ") && error.contains("line 2"), "{error}");
    }

    #[test]
    fn config_unknown_env_variable_refused() {
        for name in ["ME_LIMITS_FRAME", "ME_NETWORKS_IO_THREADS", "ME_BOGUS"] {
            let error = resolved("", &[(name, "1")], &[]).unwrap_err();
            assert!(error.contains(&format!("(from environment {name})")), "{error}");
        }
        // Not ours: ignored.
        assert!(resolved("", &[("MEX_BOGUS", "1"), ("HOME", "/")], &[]).is_ok());
    }

    #[test]
    fn config_env_values_parse_as_toml_else_string() {
        let vars = [
            ("ME_LIMITS_RATE_PER_S", "500"),
            ("ME_ENGINE_PIN_CORES", "true"),
            ("ME_NETWORK_BINARY_ADDR", "0.0.0.0:9000"),
            ("ME_MARKET_DATA_FEED_ADDRS", r#"["239.1.1.1:7710", "127.0.0.1:7720"]"#),
            ("ME_JOURNAL_FSYNC", "always"),
            ("ME_ENGINE_WAIT", "busy-spin"),
            ("ME_LIMITS_LOGIN_TIMEOUT_S", "2"),
            ("ME_DATA_DIR", "/var/lib/me"),
            ("ME_INSTRUMENTS", r#"[{ symbol = "ETH-USD", tick = 5 }]"#),
        ];
        let config = resolved("", &vars, &[]).unwrap();
        assert_eq!(config.limits.rate_per_s, 500);
        assert!(config.engine.pin_cores);
        assert_eq!(config.network.binary_addr, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(
            config.market_data.feed_addrs,
            ["239.1.1.1:7710".parse().unwrap(), "127.0.0.1:7720".parse().unwrap()]
        );
        assert_eq!(config.journal.fsync, FsyncPolicy::Always);
        assert_eq!(config.engine.wait, WaitStrategy::BusySpin);
        assert_eq!(config.limits.login_timeout_s, 2.0);
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/me"));
        let eth = Symbol::new("ETH-USD").unwrap();
        assert_eq!(config.instruments(), [Instrument { symbol: eth, tick: 5, lot: 1 }]);
    }

    #[test]
    fn config_leaf_replaces_table_and_its_origins() {
        // The flag's array replaces the file's; an error inside it is the flag's.
        let file = "[[instruments]]\nsymbol = \"BTC-USD\"\n";
        let bad = toml::Value::Array(vec![toml::Value::Table(toml::Table::from_iter([("tick".into(), 0.into())]))]);
        let error = resolved(file, &[], &[("instruments", "--instruments", bad)]).unwrap_err();
        assert!(
            error.starts_with("instruments[0]: missing field `symbol`") && error.ends_with("(from flag --instruments)")
        );
    }

    #[test]
    fn config_print_round_trips() {
        let file = "users = \"users.txt\"\n[engine]\nshards = 2\nsymbol_shards = [{ symbol = \"BTC-USD\", shard = 1 }]\n\
                    [journal]\ngroup_linger_us = 50\n[[instruments]]\nsymbol = \"BTC-USD\"\ntick = 5\nlot = 10\n";
        let vars =
            [("ME_LOG_FORMAT", "json"), ("ME_MARKET_DATA_ENABLED", "false"), ("ME_LIMITS_LOGIN_TIMEOUT_S", "0.25")];
        for config in [ServeFile::default(), resolved(file, &vars, &[]).unwrap()] {
            let text = config.to_toml().unwrap();
            assert_eq!(resolved(&text, &[], &[]).unwrap(), config, "{text}");
        }
    }
}
