//! The evidence key: HMAC-SHA256 over alert timelines (issue 18), and the Merkle
//! tree of the daily anchor. A bottom layer: config validates a key with it, the
//! store chains rows with it; it imports neither.
//!
//! A key is 32 random bytes in a file of mode 0600 (or 0400) that lives outside
//! the database — systemd hands it to the daemon with `LoadCredential=`. Its id
//! is the first 8 bytes of SHA-256 of the key, in hex, and every timeline row
//! records the id it was chained under. After a rotation the old key files stay
//! listed (`old_key_files`) so that older rows still verify.
//!
//! Without a key the daemon still runs and chains rows with plain SHA-256, marked
//! unkeyed (key id `""`); `alerts verify` then says "not keyed", never "intact",
//! because anyone who can write the database can recompute such a chain.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("cannot read evidence key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("evidence key {path} is {len} bytes; expected exactly {KEY_LEN} random bytes (pollwatch evidence init-key)")]
    Length { path: String, len: usize },
    #[error("evidence key {path} has mode {mode:04o}: group or others can read it; chmod 0600 (or 0400) it")]
    Mode { path: String, mode: u32 },
    #[error("evidence key {path} is all zero bytes; create one with pollwatch evidence init-key")]
    Zero { path: String },
    #[error("{path} exists already; an evidence key is never overwritten (rotate by creating a new file and listing the old one in old_key_files)")]
    Exists { path: String },
    #[error("cannot write evidence key {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("the operating system gave no random bytes: {0}")]
    Random(String),
}

/// One key: its id and its bytes.
#[derive(Clone)]
struct Key {
    id: String,
    bytes: [u8; KEY_LEN],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

/// The key rows are chained under now, and the keys older rows were chained
/// under. Cheap to clone. `Keyring::default()` has no key (unkeyed).
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    current: Option<Arc<Key>>,
    all: Arc<BTreeMap<String, Arc<Key>>>,
}

/// Hex of bytes.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// A key's id: first 8 bytes of its SHA-256, hex.
pub fn key_id(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes)[..8])
}

/// Reads and checks one key file.
pub fn read_key(path: &Path) -> Result<([u8; KEY_LEN], String), SealError> {
    let p = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| SealError::Read {
        path: p.clone(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SealError::Mode { path: p, mode });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let b = std::fs::read(path).map_err(|source| SealError::Read {
        path: p.clone(),
        source,
    })?;
    let bytes: [u8; KEY_LEN] = b.as_slice().try_into().map_err(|_| SealError::Length {
        path: p.clone(),
        len: b.len(),
    })?;
    if bytes.iter().all(|b| *b == 0) {
        return Err(SealError::Zero { path: p });
    }
    let id = key_id(&bytes);
    Ok((bytes, id))
}

/// Creates a new key file (mode 0600, never overwriting); returns its id.
pub fn init_key(path: &Path) -> Result<String, SealError> {
    use std::io::Write;
    let p = path.display().to_string();
    let mut bytes = [0u8; KEY_LEN];
    getrandom::getrandom(&mut bytes).map_err(|e| SealError::Random(e.to_string()))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            SealError::Exists { path: p.clone() }
        } else {
            SealError::Write {
                path: p.clone(),
                source,
            }
        }
    })?;
    f.write_all(&bytes)
        .and_then(|_| f.sync_all())
        .map_err(|source| SealError::Write { path: p, source })?;
    Ok(key_id(&bytes))
}

impl Keyring {
    /// The current key from `key_file` (if any) and the old ones for verification.
    pub fn load(key_file: Option<&Path>, old: &[PathBuf]) -> Result<Keyring, SealError> {
        let mut all = BTreeMap::new();
        let mut current = None;
        if let Some(path) = key_file {
            let (bytes, id) = read_key(path)?;
            let k = Arc::new(Key {
                id: id.clone(),
                bytes,
            });
            all.insert(id, k.clone());
            current = Some(k);
        }
        for path in old {
            let (bytes, id) = read_key(path)?;
            all.entry(id.clone())
                .or_insert_with(|| Arc::new(Key { id, bytes }));
        }
        Ok(Keyring {
            current,
            all: Arc::new(all),
        })
    }

    /// From raw bytes (tests, benchmarks).
    pub fn from_bytes(current: [u8; KEY_LEN], old: &[[u8; KEY_LEN]]) -> Keyring {
        let mut all = BTreeMap::new();
        let k = Arc::new(Key {
            id: key_id(&current),
            bytes: current,
        });
        all.insert(k.id.clone(), k.clone());
        for b in old {
            let id = key_id(b);
            all.entry(id.clone())
                .or_insert_with(|| Arc::new(Key { id, bytes: *b }));
        }
        Keyring {
            current: Some(k),
            all: Arc::new(all),
        }
    }

    /// The id new rows are chained under; `""` = unkeyed.
    pub fn current_id(&self) -> &str {
        self.current.as_ref().map_or("", |k| k.id.as_str())
    }

    pub fn has(&self, id: &str) -> bool {
        self.all.contains_key(id)
    }

    pub fn ids(&self) -> Vec<String> {
        self.all.keys().cloned().collect()
    }

    /// The MAC of `parts` (each followed by a 0x1f separator) under key `id`, or
    /// plain SHA-256 for `""`; `None` if the key is not in the ring.
    pub fn mac(&self, id: &str, parts: &[&[u8]]) -> Option<String> {
        if id.is_empty() {
            let mut h = Sha256::new();
            for p in parts {
                h.update(p);
                h.update([0x1f]);
            }
            return Some(hex(&h.finalize()));
        }
        let key = self.all.get(id)?;
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&key.bytes).ok()?;
        for p in parts {
            m.update(p);
            m.update(&[0x1f]);
        }
        Some(hex(&m.finalize().into_bytes()))
    }
}

/// SHA-256 hex of a string.
pub fn sha256_hex(s: &[u8]) -> String {
    hex(&Sha256::digest(s))
}

/// A Merkle root over hex leaves: leaves are hashed as `SHA-256(0x00 | leaf)`,
/// inner nodes as `SHA-256(0x01 | left | right)` (RFC 6962), an odd node is
/// carried up unchanged. The empty tree's root is SHA-256 of nothing.
pub fn merkle_root(leaves: &[String]) -> String {
    let mut level: Vec<[u8; 32]> = leaves.iter().map(|l| leaf_hash(l)).collect();
    if level.is_empty() {
        return hex(&Sha256::digest([]));
    }
    while level.len() > 1 {
        level = next_level(&level);
    }
    hex(&level[0])
}

/// One level up: pairs hashed, an odd last node carried up unchanged.
fn next_level(level: &[[u8; 32]]) -> Vec<[u8; 32]> {
    level
        .chunks(2)
        .map(|c| match c {
            [l, r] => node_hash(l, r),
            [one] => *one,
            _ => [0; 32],
        })
        .collect()
}

fn leaf_hash(leaf: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf.as_bytes());
    h.finalize().into()
}

fn node_hash(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(l);
    h.update(r);
    h.finalize().into()
}

/// The audit path of leaf `index`: sibling hashes (hex) from the bottom up, each
/// with the side it sits on (`"L"` or `"R"`); levels where the node is carried up
/// without a sibling are skipped. `None` if out of range.
pub fn merkle_path(leaves: &[String], index: usize) -> Option<Vec<(String, String)>> {
    if index >= leaves.len() {
        return None;
    }
    let mut level: Vec<[u8; 32]> = leaves.iter().map(|l| leaf_hash(l)).collect();
    let mut i = index;
    let mut path = Vec::new();
    while level.len() > 1 {
        let sib = i ^ 1;
        if sib < level.len() {
            let side = if sib < i { "L" } else { "R" };
            path.push((side.to_string(), hex(&level[sib])));
        }
        level = next_level(&level);
        i /= 2;
    }
    Some(path)
}

/// Recomputes a root from a leaf and its audit path (what a third party does).
pub fn merkle_check(leaf: &str, path: &[(String, String)]) -> Option<String> {
    let mut h = leaf_hash(leaf);
    for (side, sib) in path {
        let s: [u8; 32] = (0..32)
            .map(|i| u8::from_str_radix(sib.get(2 * i..2 * i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?
            .try_into()
            .ok()?;
        h = if side == "L" {
            node_hash(&s, &h)
        } else {
            node_hash(&h, &s)
        };
    }
    Some(hex(&h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merkle_paths_reach_the_root() {
        for n in 1..9 {
            let leaves: Vec<String> = (0..n).map(|i| format!("leaf{i}")).collect();
            let root = merkle_root(&leaves);
            for i in 0..n {
                let p = merkle_path(&leaves, i).unwrap();
                assert_eq!(merkle_check(&leaves[i], &p).as_deref(), Some(root.as_str()));
            }
            assert_ne!(
                merkle_check("other", &merkle_path(&leaves, 0).unwrap()),
                Some(root)
            );
        }
    }

    #[test]
    fn keyed_and_unkeyed_macs_differ_and_keys_are_told_apart() {
        let ring = Keyring::from_bytes([7; 32], &[[9; 32]]);
        let keyed = ring.mac(ring.current_id(), &[b"a", b"b"]).unwrap();
        let plain = ring.mac("", &[b"a", b"b"]).unwrap();
        assert_ne!(keyed, plain);
        let old = ring.mac(&key_id(&[9; 32]), &[b"a", b"b"]).unwrap();
        assert_ne!(keyed, old);
        assert!(ring.mac("0011223344556677", &[b"a"]).is_none());
    }

    #[test]
    fn key_files_are_created_once_and_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let id = init_key(&p).unwrap();
        assert_eq!(read_key(&p).unwrap().1, id);
        assert!(matches!(init_key(&p), Err(SealError::Exists { .. })));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
            let e = read_key(&p).unwrap_err().to_string();
            assert!(e.contains("0640"), "{e}");
        }
        let short = dir.path().join("short");
        std::fs::write(&short, b"abc").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(matches!(
            read_key(&short),
            Err(SealError::Length { len: 3, .. })
        ));
    }
}
