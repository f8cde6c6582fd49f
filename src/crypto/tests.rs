//! Unit tests of encryption at rest.
use std::collections::{HashMap, HashSet};

use super::session::{put_varint, take_varint};
use super::*;
use crate::model::TenantId;

/// The domains of a store in these tests.
const DOMAINS: Domains = &["meta", "resources", "embeddings", "entities", "edges", "adjacency"];

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

/// Sealing state of a registered session `number`.
fn session(name: &str, key: [u8; 32], number: u32) -> TenantCrypto {
    let mut crypto = TenantCrypto::new(&tenant(name), &key, DOMAINS).unwrap();
    crypto.numbered(number, HashMap::new());
    crypto
}

/// The session number and counter a sealed value names.
fn header_of(sealed: &[u8]) -> (u64, u64) {
    let (number, rest) = take_varint(&sealed[1..]).unwrap();
    (number, take_varint(rest).unwrap().0)
}

#[test]
fn sealed_values_open_only_at_their_own_key() {
    let dir = tempfile::tempdir().unwrap();
    let kek = MasterKey::from_bytes([7; 32]).kek(dir.path()).unwrap();
    let mut crypto = kek.create_tenant_key(dir.path(), &tenant("a"), DOMAINS).unwrap();
    crypto.numbered(0, HashMap::new());
    let sealed = crypto.seal("resources", b"k1", b"hello").unwrap();
    assert!(sealed.len() <= 5 + SEAL_OVERHEAD);
    assert_eq!(crypto.open("resources", b"k1", &sealed).unwrap(), b"hello");
    assert!(crypto.open("resources", b"k2", &sealed).is_err());
    assert!(crypto.open("entities", b"k1", &sealed).is_err());
    for i in 0..sealed.len() {
        let mut tampered = sealed.clone();
        tampered[i] ^= 0x40;
        assert!(crypto.open("resources", b"k1", &tampered).is_err(), "byte {i}");
    }
    for cut in 1..sealed.len() {
        assert!(crypto.open("resources", b"k1", &sealed[..cut]).is_err(), "cut {cut}");
    }
    assert!(is_sealed(&sealed) && !is_sealed(b"\x01plain"));
    assert!(crypto.seal("resources", b"k1", b"").unwrap().is_empty(), "empty stays empty");
}

#[test]
fn nothing_is_sealed_before_the_session_is_registered() {
    let crypto = TenantCrypto::new(&tenant("a"), &[1; 32], DOMAINS).unwrap();
    assert!(matches!(crypto.seal("resources", b"k", b"x"), Err(Error::Crypto(_))));
    assert!(crypto.run("resources").is_err());
    let mut out = vec![0; 5 + SEAL_OVERHEAD];
    assert!(crypto.seal_into("embeddings", b"k", &mut out, |_| {}).is_err());
}

#[test]
fn values_sealed_into_a_buffer_open_like_any_other() {
    let crypto = session("a", [4; 32], 7);
    // Stale bytes in the buffer are overwritten, whatever they were.
    let mut out = vec![0xEE; 5 + SEAL_OVERHEAD];
    let start = crypto
        .seal_into("embeddings", b"k1", &mut out, |body| body.copy_from_slice(b"hello"))
        .unwrap();
    assert!(start > 0, "the header is shorter than the room kept for it");
    assert_eq!(crypto.open("embeddings", b"k1", &out[start..]).unwrap(), b"hello");
    assert!(crypto.open("embeddings", b"k1", &out[start - 1..]).is_err());
    assert!(crypto.open("embeddings", b"k2", &out[start..]).is_err());
    assert!(crypto.open("resources", b"k1", &out[start..]).is_err());
    // No room for a plaintext: an error, not a panic or an empty seal.
    for len in [0, SEAL_OVERHEAD - 1, SEAL_OVERHEAD] {
        let mut small = vec![0; len];
        assert!(crypto.seal_into("embeddings", b"k1", &mut small, |_| {}).is_err(), "{len}");
    }
}

/// A run of values sealed one after another into one buffer: each opens at its own key only,
/// empty ones stay empty, no two share a nonce (across reservations, and with values sealed
/// singly meanwhile), and a domain without session keys seals too.
#[test]
fn values_sealed_in_a_run_open_like_any_other() {
    let crypto = session("a", [3; 32], 5);
    let mut counters = HashSet::new();
    for domain in ["resources", "vectors.hnsw"] {
        let mut run = crypto.run(domain).unwrap();
        let mut out = Vec::new();
        let mut ends = Vec::new();
        for i in 0..200usize {
            let plaintext = if i % 7 == 3 { Vec::new() } else { vec![i as u8; i % 150] };
            let key = (i as u32).to_be_bytes();
            run.seal_append(&key, &mut out, |out| out.extend_from_slice(&plaintext)).unwrap();
            ends.push((out.len(), plaintext, key));
            let single = crypto.seal(domain, &key, b"single").unwrap();
            assert!(counters.insert(header_of(&single).1), "single seal {i}");
        }
        let mut start = 0;
        let domain: &'static str = if domain == "resources" { "resources" } else { "vectors.hnsw" };
        for (end, plaintext, key) in ends {
            let sealed = &out[start..end];
            assert_eq!(sealed.is_empty(), plaintext.is_empty());
            if !sealed.is_empty() {
                assert_eq!(header_of(sealed).0, 5);
                assert_eq!(crypto.open(domain, &key, sealed).unwrap(), plaintext);
                assert!(crypto.open(domain, b"other", sealed).is_err());
                assert!(counters.insert(header_of(sealed).1), "a counter used twice");
            }
            start = end;
        }
    }
}

#[test]
fn values_open_in_later_sessions_by_their_number() {
    let key = [3u8; 32];
    let first = session("a", key, 0);
    let sealed = first.seal("resources", b"k", b"hello").unwrap();
    // Format byte, session 0, a small counter, the tag: about 21 bytes of overhead.
    assert!(sealed.len() - 5 <= 1 + 1 + 3 + TAG_BYTES, "{}", sealed.len());
    // A later open knows session 0 by the id registered for it.
    let mut later = TenantCrypto::new(&tenant("a"), &key, DOMAINS).unwrap();
    assert_ne!(later.session_id(), first.session_id(), "each open draws a new id");
    later.numbered(1, HashMap::from([(0, first.session_id())]));
    for _ in 0..2 {
        // The second round opens with the cached session keys.
        assert_eq!(later.open("resources", b"k", &sealed).unwrap(), b"hello");
    }
    let newer = later.seal("resources", b"k", b"again").unwrap();
    assert_eq!(later.open("resources", b"k", &newer).unwrap(), b"again");
    assert!(first.open("resources", b"k", &newer).is_err(), "session 1 is unknown to it");
    // Another data key derives other keys from the same session.
    let mut stranger = TenantCrypto::new(&tenant("a"), &[8; 32], DOMAINS).unwrap();
    stranger.numbered(1, HashMap::from([(0, first.session_id())]));
    assert!(stranger.open("resources", b"k", &sealed).is_err());
}

/// The key binds the session's number as well as its id: a session id drawn twice (a forked
/// process sharing its parent's generator) under two numbers gives two keys, and the same
/// counter under them two different ciphertexts.
#[test]
fn a_repeated_session_id_under_another_number_is_another_key() {
    let key = [6u8; 32];
    let mut first = TenantCrypto::new(&tenant("a"), &key, DOMAINS).unwrap();
    first.numbered(0, HashMap::new());
    let mut twin = TenantCrypto::new(&tenant("a"), &key, DOMAINS).unwrap();
    twin.id = first.session_id();
    twin.numbered(1, HashMap::from([(0, first.session_id())]));
    let a = first.seal("resources", b"k", b"same plaintext").unwrap();
    let b = twin.seal("resources", b"k", b"same plaintext").unwrap();
    assert_eq!(header_of(&a).1, header_of(&b).1, "the same first counter");
    let body = |sealed: &[u8]| sealed[3..].to_vec();
    assert_ne!(body(&a), body(&b), "another key, so another keystream and tag");
    assert_eq!(twin.open("resources", b"k", &a).unwrap(), b"same plaintext");
}

#[test]
fn varints_have_one_encoding() {
    for value in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX - 1, u64::MAX] {
        let mut out = [0; 10];
        let len = put_varint(value, &mut out);
        assert_eq!(take_varint(&out[..len]), Some((value, &[][..])), "{value}");
        assert_eq!(take_varint(&out[..len - 1]), None, "cut {value}");
    }
    assert_eq!(take_varint(&[0x80, 0x00]), None, "padded zero");
    assert_eq!(take_varint(&[0xAC, 0x82, 0x00]), None, "padded 300");
    assert_eq!(take_varint(&[0xFF; 9].iter().copied().chain([0x02]).collect::<Vec<_>>()), None);
    assert_eq!(take_varint(&[0x80; 11]), None);
    assert_eq!(take_varint(&[]), None);
}

#[test]
fn threads_sealing_together_never_share_a_counter() {
    let crypto = session("a", [2; 32], 0);
    let seen: Vec<u64> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..32)
            .map(|thread| {
                let crypto = &crypto;
                scope.spawn(move || {
                    let mut run = crypto.run("resources").unwrap();
                    let mut counters = Vec::new();
                    for i in 0..300u32 {
                        let mut out = Vec::new();
                        let key = [thread as u8, (i >> 8) as u8, i as u8];
                        run.seal_append(&key, &mut out, |out| out.push(1)).unwrap();
                        counters.push(header_of(&out).1);
                    }
                    counters
                })
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len());
}

#[test]
fn a_value_moved_to_another_tenant_fails_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let kek = MasterKey::from_bytes([7; 32]).kek(dir.path()).unwrap();
    let mut a = kek.create_tenant_key(dir.path(), &tenant("a"), DOMAINS).unwrap();
    a.numbered(0, HashMap::new());
    let sealed = a.seal("resources", b"k", b"secret").unwrap();
    let other = tempfile::tempdir().unwrap();
    let mut b = kek.create_tenant_key(other.path(), &tenant("b"), DOMAINS).unwrap();
    b.numbered(1, HashMap::from([(0, a.session_id())]));
    assert!(b.open("resources", b"k", &sealed).is_err());
}

#[test]
fn wrong_master_key_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let old = MasterKey::from_text("correct horse battery staple").unwrap();
    let old_kek = old.kek(dir.path()).unwrap();
    let mut crypto = old_kek.create_tenant_key(dir.path(), &tenant("t"), DOMAINS).unwrap();
    crypto.numbered(0, HashMap::new());
    let sealed = crypto.seal("meta", b"", b"x").unwrap();
    let registry = HashMap::from([(0, crypto.session_id())]);
    let wrong = MasterKey::from_text("wrong horse").unwrap().kek(dir.path()).unwrap();
    assert!(matches!(
        wrong.open_tenant_key(dir.path(), &tenant("t"), DOMAINS),
        Err(Error::Crypto(_))
    ));
    let reopen = |kek: &MasterKek| {
        let mut crypto = kek.open_tenant_key(dir.path(), &tenant("t"), DOMAINS)?;
        crypto.numbered(1, registry.clone());
        crypto.open("meta", b"", &sealed)
    };
    // The same passphrase derives the same key again (salt and parameters persist).
    assert_eq!(reopen(&old.kek(dir.path()).unwrap()).unwrap(), b"x");
    let new = MasterKey::from_bytes([9; 32]).kek(dir.path()).unwrap();
    old_kek.rewrap(&new, dir.path(), &tenant("t")).unwrap();
    old_kek.rewrap(&new, dir.path(), &tenant("t")).unwrap();
    assert!(old_kek.open_tenant_key(dir.path(), &tenant("t"), DOMAINS).is_err());
    assert_eq!(reopen(&new).unwrap(), b"x");
    // A key file bound to another tenant name does not open.
    assert!(new.open_tenant_key(dir.path(), &tenant("u"), DOMAINS).is_err());
}

/// The Argon2id parameters are explicit and stored with the salt: the file names the
/// algorithm, 64 MiB, 3 passes, one lane, and the key derived under them is what opens.
#[test]
fn passphrase_parameters_are_stored_with_the_salt() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::from_passphrase("a long enough passphrase").unwrap();
    let kek = key.kek(dir.path()).unwrap();
    let salt = std::fs::read(dir.path().join(SALT_FILE)).unwrap();
    assert_eq!(&salt[..8], SALT_FILE_MAGIC);
    assert_eq!(salt[8], 1, "argon2id, version 0x13");
    let word = |at: usize| u32::from_be_bytes(salt[at..at + 4].try_into().unwrap());
    assert_eq!((word(9), word(13), word(17)), (64 * 1024, 3, 1));
    assert_eq!(salt.len(), 8 + 1 + 12 + 16);
    let mut crypto = kek.create_tenant_key(dir.path(), &tenant("p"), DOMAINS).unwrap();
    crypto.numbered(0, HashMap::new());
    let sealed = crypto.seal("meta", b"", b"y").unwrap();
    let again = key.kek(dir.path()).unwrap();
    let mut reopened = again.open_tenant_key(dir.path(), &tenant("p"), DOMAINS).unwrap();
    reopened.numbered(1, HashMap::from([(0, crypto.session_id())]));
    assert_eq!(reopened.open("meta", b"", &sealed).unwrap(), b"y");
    // A damaged or planted salt file is refused, never a silent other key.
    let mut greedy = salt.clone();
    greedy[9..13].copy_from_slice(&u32::MAX.to_be_bytes());
    std::fs::write(dir.path().join(SALT_FILE), &greedy).unwrap();
    assert!(matches!(key.kek(dir.path()), Err(Error::Crypto(_))));
    std::fs::write(dir.path().join(SALT_FILE), &salt[..20]).unwrap();
    assert!(matches!(key.kek(dir.path()), Err(Error::Crypto(_))));
}

/// A symbolic link planted in the key file's place is never followed: shredding refuses it
/// and leaves its target untouched, and opening refuses it too.
#[cfg(unix)]
#[test]
fn key_files_are_never_reached_through_a_symbolic_link() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious bytes").unwrap();
    let tenant_dir = dir.path().join("t");
    std::fs::create_dir(&tenant_dir).unwrap();
    std::os::unix::fs::symlink(&victim, tenant_dir.join(KEY_FILE)).unwrap();
    assert!(shred_key(&tenant_dir).is_err());
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious bytes");
    let kek = MasterKey::from_bytes([1; 32]).kek(dir.path()).unwrap();
    assert!(matches!(
        kek.open_tenant_key(&tenant_dir, &tenant("t"), DOMAINS),
        Err(Error::Crypto(_))
    ));
}

#[test]
fn name_tokens_cover_every_short_prefix() {
    let crypto = session("n", [1; 32], 0);
    let tokens: Vec<_> = crypto.name_tokens("éléphantesque").collect();
    assert_eq!(tokens.len(), NAME_TOKEN_CHARS);
    for query in ["é", "élé", "éléphan", "éléphant", "éléphantesque", "éléphantes"] {
        assert!(tokens.contains(&crypto.name_query_token(query)), "{query}");
    }
    assert!(!tokens.contains(&crypto.name_query_token("x")));
}

#[test]
fn master_key_text_forms() {
    let hex = "00".repeat(31) + "ff";
    let debug = |key: MasterKey| format!("{key:?}");
    assert_eq!(debug(MasterKey::from_text(&hex).unwrap()), "MasterKey(key, redacted)");
    assert_eq!(debug(MasterKey::from_text("a phrase").unwrap()), "MasterKey(passphrase, redacted)");
    assert!(MasterKey::from_text("  \n").is_err());
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    std::fs::write(&raw, [0x80u8; 32]).unwrap();
    assert_eq!(debug(MasterKey::from_file(&raw).unwrap()), "MasterKey(key, redacted)");
    let text = dir.path().join("text");
    std::fs::write(&text, format!("{hex}\n")).unwrap();
    assert_eq!(debug(MasterKey::from_file(&text).unwrap()), "MasterKey(key, redacted)");
    assert!(matches!(MasterKey::from_file(&dir.path().join("missing")), Err(Error::Crypto(_))));
}
