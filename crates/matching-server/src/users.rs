//! Who may log in, and as what: the `--users` file.
//!
//! One user a line: `<user id> <role> <salt> <hash>`, where `role` is
//! `trader`, `operator` or `drop_copy`, `salt` is 16 random bytes and `hash`
//! is SHA-256(salt ‖ key), both in hex; `#` starts a comment. The key itself
//! is never stored: `users add` prints it once. Keys are 32 random bytes
//! (64 hex characters), so a fast hash is enough (nothing to brute-force);
//! they are compared in constant time.
//!
//! A FIX session is a line `fix <SenderCompID> <TargetCompID> <user id>
//! <role>` (`users add-fix`): a FIX Logon with those CompIDs (the client's
//! SenderCompID, ours as its TargetCompID) is that user, in that role.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use std::fmt;
use std::io;

use matching_core::{UserId, VALUE_MAX};
use sha2::{Digest, Sha256};

/// What a session may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Acts only as itself: the `user` of its commands is its own.
    Trader,
    /// May also `halt`/`resume` and act for any user (mass cancel: the kill switch).
    Operator,
    /// Read-only: receives the events of every user (a risk system's copy),
    /// sends nothing but queries.
    DropCopy,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Trader => "trader",
            Role::Operator => "operator",
            Role::DropCopy => "drop_copy",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "trader" => Some(Role::Trader),
            "operator" => Some(Role::Operator),
            "drop_copy" | "drop-copy" => Some(Role::DropCopy),
            _ => None,
        }
    }
}

/// Why a users file cannot be read or added to.
#[derive(Debug)]
pub enum UsersError {
    Io {
        path: String,
        error: io::Error,
    },
    /// A line that is not `<user id> <role> <salt> <hash>`, or a user twice.
    Line {
        path: String,
        line: usize,
        reason: String,
    },
    /// `users add` of a user the file has.
    Exists {
        path: String,
        user: UserId,
    },
    /// A user id over 2^53 - 1.
    UserOutOfRange(UserId),
    /// The system gave no randomness for a key.
    NoRandomness(String),
}

impl fmt::Display for UsersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsersError::Io { path, error } => write!(f, "cannot use {path}: {error}"),
            UsersError::Line { path, line, reason } => write!(f, "{path} line {line}: {reason}"),
            UsersError::Exists { path, user } => write!(f, "user {user} is already in {path}"),
            UsersError::UserOutOfRange(user) => write!(f, "user ids go up to 2^53 - 1, not {user}"),
            UsersError::NoRandomness(error) => write!(f, "no randomness for a key: {error}"),
        }
    }
}

impl std::error::Error for UsersError {}

struct Entry {
    role: Role,
    salt: [u8; 16],
    hash: [u8; 32],
}

/// The users of a `--users` file.
#[derive(Default)]
pub struct Users {
    entries: HashMap<UserId, Entry>,
    /// FIX sessions: `(their SenderCompID, our TargetCompID)` → user and role.
    fix: HashMap<(String, String), (UserId, Role)>,
}

fn hash(salt: &[u8], key: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(key);
    hasher.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Equal, in time that depends only on the length.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Users {
    /// Reads a users file; a line that is not one names itself in the error.
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| UsersError::Io { path: name.clone(), error })?;
        let mut users = Users::default();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let line_error = |reason: String| UsersError::Line { path: name.clone(), line: number + 1, reason };
            if let ["fix", sender, target, user, role] = fields.as_slice() {
                let user = user.parse::<UserId>().ok().filter(|u| *u <= VALUE_MAX);
                let (Some(user), Some(role)) = (user, Role::parse(role)) else {
                    return Err(line_error(
                        "expected `fix <SenderCompID> <TargetCompID> <user id> <role>`".to_string(),
                    ));
                };
                if users.fix.insert((sender.to_string(), target.to_string()), (user, role)).is_some() {
                    return Err(line_error(format!("the FIX session {sender} → {target} is listed twice")));
                }
                continue;
            }
            let entry = match fields.as_slice() {
                [user, role, salt, hash] => user.parse::<UserId>().ok().filter(|u| *u <= VALUE_MAX).and_then(|user| {
                    Some((user, Entry { role: Role::parse(role)?, salt: unhex(salt)?, hash: unhex(hash)? }))
                }),
                _ => None,
            };
            let Some((user, entry)) = entry else {
                return Err(line_error(
                    "expected `<user id> <trader|operator|drop_copy> <salt hex> <hash hex>`".to_string(),
                ));
            };
            if users.entries.insert(user, entry).is_some() {
                return Err(line_error(format!("user {user} is listed twice")));
            }
        }
        Ok(users)
    }

    /// The role of `user` if `key` is its key.
    pub fn check(&self, user: UserId, key: &str) -> Option<Role> {
        let entry = self.entries.get(&user)?;
        constant_time_eq(&hash(&entry.salt, key.as_bytes()), &entry.hash).then_some(entry.role)
    }

    /// The user and role of a FIX session: their SenderCompID, ours.
    pub fn fix_session(&self, sender: &str, target: &str) -> Option<(UserId, Role)> {
        self.fix.get(&(sender.to_string(), target.to_string())).copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len() + self.fix.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Adds a FIX session to the users file at `path` (created if need be):
/// a Logon from `sender` to `target` is `user` in `role`.
pub fn add_fix_session(path: &Path, sender: &str, target: &str, user: UserId, role: Role) -> Result<(), UsersError> {
    if user > VALUE_MAX {
        return Err(UsersError::UserOutOfRange(user));
    }
    let valid = |id: &str| !id.is_empty() && id.bytes().all(|b| b.is_ascii_graphic() && b != b'#');
    if !valid(sender) || !valid(target) {
        let reason = "CompIDs are printable ASCII without spaces or #".to_string();
        return Err(UsersError::Line { path: path.display().to_string(), line: 0, reason });
    }
    if path.exists() && Users::load(path)?.fix_session(sender, target).is_some() {
        let reason = format!("the FIX session {sender} → {target} is already there");
        return Err(UsersError::Line { path: path.display().to_string(), line: 0, reason });
    }
    let io_error = |error| UsersError::Io { path: path.display().to_string(), error };
    let mut file = OpenOptions::new().create(true).append(true).open(path).map_err(io_error)?;
    let line = format!("fix {sender} {target} {user} {}\n", role.as_str());
    file.write_all(line.as_bytes()).and_then(|()| file.sync_all()).map_err(io_error)
}

/// Adds `user` with `role` to the users file at `path` (created if need
/// be) and returns its new key, which is stored nowhere else.
pub fn add_user(path: &Path, user: UserId, role: Role) -> Result<String, UsersError> {
    if user > VALUE_MAX {
        return Err(UsersError::UserOutOfRange(user));
    }
    if path.exists() && Users::load(path)?.entries.contains_key(&user) {
        return Err(UsersError::Exists { path: path.display().to_string(), user });
    }
    let mut key = [0u8; 32];
    let mut salt = [0u8; 16];
    getrandom::fill(&mut key).map_err(|e| UsersError::NoRandomness(e.to_string()))?;
    getrandom::fill(&mut salt).map_err(|e| UsersError::NoRandomness(e.to_string()))?;
    let key = hex(&key);
    let line = format!("{user} {} {} {}\n", role.as_str(), hex(&salt), hex(&hash(&salt, key.as_bytes())));
    let io_error = |error| UsersError::Io { path: path.display().to_string(), error };
    let mut file = OpenOptions::new().create(true).append(true).open(path).map_err(io_error)?;
    file.write_all(line.as_bytes()).and_then(|()| file.sync_all()).map_err(io_error)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_checked_against_its_hash_only() {
        let path = std::env::temp_dir().join(format!("mx-users-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let trader = add_user(&path, 7, Role::Trader).unwrap();
        let operator = add_user(&path, 1, Role::Operator).unwrap();
        assert_eq!(trader.len(), 64);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&trader) && !text.contains(&operator), "keys are not stored");
        let users = Users::load(&path).unwrap();
        assert_eq!(users.check(7, &trader), Some(Role::Trader));
        assert_eq!(users.check(1, &operator), Some(Role::Operator));
        assert_eq!(users.check(7, &operator), None);
        assert_eq!(users.check(8, &trader), None);
        assert_eq!(users.check(7, ""), None);
        assert!(add_user(&path, 7, Role::Trader).is_err(), "a user is added once");
        std::fs::write(&path, "7 trader nothex abc\n").unwrap();
        let error = Users::load(&path).err().unwrap().to_string();
        assert!(error.contains("line 1"), "{error}");
        std::fs::remove_file(&path).unwrap();
        // FIX sessions, beside keyed users.
        add_user(&path, 7, Role::Trader).unwrap();
        add_fix_session(&path, "CLIENT7", "ME", 7, Role::Trader).unwrap();
        add_fix_session(&path, "RISK", "ME", 90, Role::DropCopy).unwrap();
        assert!(add_fix_session(&path, "CLIENT7", "ME", 8, Role::Trader).is_err(), "a session is added once");
        let users = Users::load(&path).unwrap();
        assert_eq!(users.fix_session("CLIENT7", "ME"), Some((7, Role::Trader)));
        assert_eq!(users.fix_session("RISK", "ME"), Some((90, Role::DropCopy)));
        assert_eq!(users.fix_session("CLIENT7", "OTHER"), None);
        std::fs::remove_file(&path).unwrap();
    }
}
