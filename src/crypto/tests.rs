//! Unit tests of encryption at rest.
use super::*;

/// The domains of a store in these tests.
const DOMAINS: Domains = &["meta", "resources", "embeddings", "entities", "edges", "adjacency"];

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

#[test]
fn sealed_values_open_only_at_their_own_key() {
    let dir = tempfile::tempdir().unwrap();
    let kek = MasterKey::from_bytes([7; 32]).kek(dir.path()).unwrap();
    let crypto = kek.create_tenant_key(dir.path(), &tenant("a"), DOMAINS).unwrap();
    let sealed = crypto.seal("resources", b"k1", b"hello");
    assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
    assert_eq!(crypto.open("resources", b"k1", &sealed).unwrap(), b"hello");
    assert!(crypto.open("resources", b"k2", &sealed).is_err());
    assert!(crypto.open("entities", b"k1", &sealed).is_err());
    for i in 0..sealed.len() {
        let mut tampered = sealed.clone();
        tampered[i] ^= 0x40;
        assert!(crypto.open("resources", b"k1", &tampered).is_err(), "byte {i}");
    }
    for cut in 0..sealed.len() {
        assert!(crypto.open("resources", b"k1", &sealed[..cut]).is_err() || cut == 0);
    }
}

#[test]
fn values_sealed_into_a_buffer_open_like_any_other() {
    let dir = tempfile::tempdir().unwrap();
    let kek = MasterKey::from_bytes([7; 32]).kek(dir.path()).unwrap();
    let crypto = kek.create_tenant_key(dir.path(), &tenant("a"), DOMAINS).unwrap();
    // Stale bytes in the buffer are overwritten, whatever they were.
    let mut out = vec![0xEE; 5 + SEAL_OVERHEAD];
    crypto.seal_into("embeddings", b"k1", &mut out, |body| body.copy_from_slice(b"hello")).unwrap();
    assert_eq!(crypto.open("embeddings", b"k1", &out).unwrap(), b"hello");
    assert!(crypto.open("embeddings", b"k2", &out).is_err());
    assert!(crypto.open("resources", b"k1", &out).is_err());
    // Two seals of the same value never share a nonce.
    let mut again = vec![0; out.len()];
    crypto
        .seal_into("embeddings", b"k1", &mut again, |body| body.copy_from_slice(b"hello"))
        .unwrap();
    assert_ne!(again, out);
    // No room for a plaintext: an error, not a panic or an empty seal.
    for len in [0, SEAL_OVERHEAD - 1, SEAL_OVERHEAD] {
        let mut small = vec![0; len];
        assert!(crypto.seal_into("embeddings", b"k1", &mut small, |_| {}).is_err(), "{len}");
    }
}

/// A run of values sealed one after another into one buffer: each opens at its own key
/// only, empty ones stay empty, no two share a nonce (across reservations, and with
/// values sealed singly meanwhile), and a domain outside [`DOMAINS`] seals too.
#[test]
fn values_sealed_in_a_run_open_like_any_other() {
    let mut crypto = TenantCrypto::new(&tenant("a"), &[3u8; 32], DOMAINS);
    crypto.numbered(5, HashMap::new());
    // Session 5, then the value's counter.
    let counter_of = |sealed: &[u8]| {
        let (number, rest) = take_varint(&sealed[1..]).unwrap();
        assert_eq!(number, 5);
        take_varint(rest).unwrap().0
    };
    let mut counters = std::collections::HashSet::new();
    for domain in ["resources", "not-a-column-family"] {
        let mut run = crypto.run(domain);
        let mut out = Vec::new();
        let mut ends = Vec::new();
        for i in 0..3 * RunSealer::NONCES {
            let plaintext = if i % 7 == 3 { Vec::new() } else { vec![i as u8; i % 150] };
            let key = (i as u32).to_be_bytes();
            run.seal_append(&key, &mut out, |out| out.extend_from_slice(&plaintext)).unwrap();
            ends.push((out.len(), plaintext, key));
            let single = crypto.seal(domain, &key, b"single");
            assert!(counters.insert(counter_of(&single)), "single seal {i}");
        }
        let mut start = 0;
        for (end, plaintext, key) in ends {
            let sealed = &out[start..end];
            assert_eq!(sealed.is_empty(), plaintext.is_empty());
            if !sealed.is_empty() {
                let domain = static_domain(domain);
                assert_eq!(crypto.open(domain, &key, sealed).unwrap(), plaintext);
                assert!(crypto.open(domain, b"other", sealed).is_err());
                assert!(counters.insert(counter_of(sealed)), "a counter used twice");
            }
            start = end;
        }
    }
}

fn static_domain(domain: &str) -> &'static str {
    DOMAINS.iter().copied().find(|d| *d == domain).unwrap_or("not-a-column-family")
}

/// Bytes sealed by the build that used `aes-gcm` 0.10 / `aes-gcm-siv` 0.11 (before the move
/// to the 0.11 / 0.12 releases with 4-block GHASH): the stored format must not drift with
/// a dependency.
#[test]
fn values_sealed_by_an_earlier_build_open() {
    let crypto = TenantCrypto::new(&tenant("kat-tenant"), &[0x5a; 32], DOMAINS);
    let session = unhex(concat!(
        "a2a2fc520e6421e8ec2144fa16c049543b000000000000000009ab8d67a17475bd3aae331723c72aa6",
        "8e7b883e947126c0cbe02299e82a70e873bd2907dc8266bd203af4facc286daaebbdaf165c7b8f2abd",
        "6dfcb6e9c76f0426",
    ));
    let legacy = unhex("a10dda6eb143eaae7890729fce5df7298db680b2fbd2014eb012c49b6efe10c24de483");
    assert_eq!(
        crypto.open("embeddings", b"key-1", &session).unwrap(),
        b"a value sealed by percolate 0.1 with aes-gcm 0.10"
    );
    assert_eq!(crypto.open("resources", b"key-2", &legacy).unwrap(), b"legacy");
    let other = TenantCrypto::new(&tenant("kat-tenant"), &[0x5b; 32], DOMAINS);
    assert!(other.open("embeddings", b"key-1", &session).is_err());
}

#[test]
fn values_of_earlier_sessions_and_of_the_first_design_open() {
    let key = [9u8; 32];
    let earlier = TenantCrypto::new(&tenant("a"), &key, DOMAINS);
    let now = TenantCrypto::new(&tenant("a"), &key, DOMAINS);
    assert_ne!(earlier.session.id, now.session.id, "each open is a new session");
    let sealed = earlier.seal("resources", b"k", b"from an earlier open");
    let legacy = earlier.seal_legacy("resources", b"k", b"from the first design");
    for _ in 0..2 {
        // The second round opens with the cached session key.
        assert_eq!(now.open("resources", b"k", &sealed).unwrap(), b"from an earlier open");
        assert_eq!(now.open("resources", b"k", &legacy).unwrap(), b"from the first design");
        assert!(now.open("resources", b"j", &sealed).is_err());
        assert!(now.open("resources", b"j", &legacy).is_err());
    }
    assert!(is_sealed(&sealed) && is_sealed(&legacy) && !is_sealed(b"\x01plain"));
    // Another data key derives another session key from the same session id.
    let stranger = TenantCrypto::new(&tenant("a"), &[8u8; 32], DOMAINS);
    assert!(stranger.open("resources", b"k", &sealed).is_err());
    assert!(stranger.open("resources", b"k", &legacy).is_err());
}

#[test]
fn numbered_values_are_short_and_open_in_later_sessions_only_by_their_number() {
    let key = [3u8; 32];
    let mut first = TenantCrypto::new(&tenant("a"), &key, DOMAINS);
    first.numbered(0, HashMap::new());
    let sealed = first.seal("resources", b"k", b"hello");
    assert_eq!(sealed[0], SEALED_NUMBERED);
    // Format byte, session 0, a counter under 2^14, the tag: 21 to 22 bytes, not 41.
    assert!(sealed.len() - 5 <= 1 + 1 + 3 + TAG_BYTES, "{}", sealed.len());
    assert_eq!(first.open("resources", b"k", &sealed).unwrap(), b"hello");
    for i in 0..sealed.len() {
        let mut tampered = sealed.clone();
        tampered[i] ^= 0x40;
        assert!(first.open("resources", b"k", &tampered).is_err(), "byte {i}");
    }
    for cut in 1..sealed.len() {
        assert!(first.open("resources", b"k", &sealed[..cut]).is_err(), "cut {cut}");
    }
    // The same counter written in a padded (non-shortest) varint is refused.
    let (_, after_number) = take_varint(&sealed[2..]).unwrap();
    let counter_len = sealed.len() - 2 - after_number.len();
    let mut padded = sealed[..2].to_vec();
    padded.extend(sealed[2..1 + 2 + counter_len - 1].iter().copied());
    padded.push(sealed[2 + counter_len - 1] | 0x80);
    padded.push(0);
    padded.extend_from_slice(after_number);
    assert!(first.open("resources", b"k", &padded).is_err());

    // A later open knows session 0 by the id registered for it.
    let mut later = TenantCrypto::new(&tenant("a"), &key, DOMAINS);
    later.numbered(1, HashMap::from([(0, first.session_id())]));
    assert_eq!(later.open("resources", b"k", &sealed).unwrap(), b"hello");
    let newer = later.seal("resources", b"k", b"again");
    assert_eq!(later.open("resources", b"k", &newer).unwrap(), b"again");
    assert!(first.open("resources", b"k", &newer).is_err(), "session 1 is unknown to it");
    // A restored backup hands number 0 out again, to a new random id: another key, so the
    // old value does not open under it (and no key and nonce pair is ever reused).
    let mut restored = TenantCrypto::new(&tenant("a"), &key, DOMAINS);
    restored.numbered(0, HashMap::new());
    assert!(restored.open("resources", b"k", &sealed).is_err());
    // Values that name their session by id (earlier builds) still open.
    let by_id = TenantCrypto::new(&tenant("a"), &key, DOMAINS);
    let old = by_id.seal("resources", b"k", b"by id");
    assert_eq!(old[0], SEALED_SESSION);
    assert_eq!(later.open("resources", b"k", &old).unwrap(), b"by id");
}

#[test]
fn numbered_values_sealed_into_a_buffer_start_where_they_say() {
    let mut crypto = TenantCrypto::new(&tenant("a"), &[4u8; 32], DOMAINS);
    crypto.numbered(7, HashMap::new());
    let mut out = vec![0xEE; 5 + SEAL_OVERHEAD];
    let start = crypto
        .seal_into("embeddings", b"k1", &mut out, |body| body.copy_from_slice(b"hello"))
        .unwrap();
    assert!(start > 0);
    assert_eq!(crypto.open("embeddings", b"k1", &out[start..]).unwrap(), b"hello");
    assert!(crypto.open("embeddings", b"k1", &out[start - 1..]).is_err());
}

/// A numbered value as this layout writes it (session 3, counter 300): the stored format
/// must not drift.
#[test]
fn a_numbered_value_of_this_layout_opens() {
    // Made by hand: the header and cipher of session 3 (id 0x11...), counter 300.
    let id = [0x11; SESSION_BYTES];
    let mut writer = TenantCrypto::new(&tenant("kat-tenant"), &[0x5a; 32], DOMAINS);
    writer.session.id = id;
    writer.session.ciphers = session_ciphers(&writer.session_root, b"kat-tenant", &id);
    writer.session.sealers = session_sealers(&writer.session_root, b"kat-tenant", &id);
    writer.numbered(3, HashMap::new());
    let mut header = [0; SEAL_HEADER];
    let len = writer.header(300, &mut header);
    let mut body = [&b"numbered"[..], &[0; TAG_BYTES]].concat();
    let tag = writer.encrypt("resources", b"key-3", 300, &mut body, 0..8).unwrap();
    let made = [&header[..len], &body[..8], &tag].concat();
    let hex: String = made.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, NUMBERED_KAT);
    assert_eq!(&made[..4], &[SEALED_NUMBERED, 3, 0xAC, 0x02]);
    // A later open that knows session 3 by its id opens it.
    let mut reader = TenantCrypto::new(&tenant("kat-tenant"), &[0x5a; 32], DOMAINS);
    reader.numbered(4, HashMap::from([(3, id)]));
    assert_eq!(reader.open("resources", b"key-3", &unhex(NUMBERED_KAT)).unwrap(), b"numbered");
}

const NUMBERED_KAT: &str = "a303ac02af231545083274c9c2001f7486a5a30b2a9c2e2f28e8da63";

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
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
fn counters_of_threads_sealing_together_never_meet() {
    let counters = Counters::default();
    let seen: Vec<u64> = std::thread::scope(|scope| {
        // Half take one value at a time, half blocks of 32 (of which they use 31).
        let threads: Vec<_> = (0..2 * STRIPES)
            .map(|thread| {
                let counters = &counters;
                scope.spawn(move || match thread % 2 {
                    0 => (0..1000).map(|_| counters.next()).collect::<Vec<_>>(),
                    _ => (0..32).flat_map(|_| counters.reserve(32).take(31)).collect(),
                })
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len());
}

#[test]
fn nonces_never_repeat_within_a_session() {
    let crypto = TenantCrypto::new(&tenant("a"), &[1u8; 32], DOMAINS);
    let a = crypto.seal("resources", b"k", b"same");
    let b = crypto.seal("resources", b"k", b"same");
    assert_ne!(a, b, "the same value sealed twice differs");
    assert_eq!(a[..1 + SESSION_BYTES], b[..1 + SESSION_BYTES]);
    assert_ne!(a[1 + SESSION_BYTES..][..COUNTER_BYTES], b[1 + SESSION_BYTES..][..COUNTER_BYTES]);
}

#[test]
fn a_value_moved_to_another_tenant_fails_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let kek = MasterKey::from_bytes([7; 32]).kek(dir.path()).unwrap();
    let a = kek.create_tenant_key(&dir.path().join(""), &tenant("a"), DOMAINS).unwrap();
    let sealed = a.seal("resources", b"k", b"secret");
    let other = tempfile::tempdir().unwrap();
    let b = kek.create_tenant_key(other.path(), &tenant("b"), DOMAINS).unwrap();
    assert!(b.open("resources", b"k", &sealed).is_err());
}

#[test]
fn wrong_master_key_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let old = MasterKey::from_text("correct horse battery staple").unwrap();
    let old_kek = old.kek(dir.path()).unwrap();
    let sealed =
        old_kek.create_tenant_key(dir.path(), &tenant("t"), DOMAINS).unwrap().seal("m", b"", b"x");
    let wrong = MasterKey::from_text("wrong horse").unwrap().kek(dir.path()).unwrap();
    assert!(matches!(
        wrong.open_tenant_key(dir.path(), &tenant("t"), DOMAINS),
        Err(Error::Crypto(_))
    ));
    // The same passphrase derives the same key again (the salt persists).
    let again = old.kek(dir.path()).unwrap();
    assert_eq!(
        again
            .open_tenant_key(dir.path(), &tenant("t"), DOMAINS)
            .unwrap()
            .open("m", b"", &sealed)
            .unwrap(),
        b"x"
    );
    let new = MasterKey::from_bytes([9; 32]).kek(dir.path()).unwrap();
    old_kek.rewrap(&new, dir.path(), &tenant("t")).unwrap();
    old_kek.rewrap(&new, dir.path(), &tenant("t")).unwrap();
    assert!(old_kek.open_tenant_key(dir.path(), &tenant("t"), DOMAINS).is_err());
    let reopened = new.open_tenant_key(dir.path(), &tenant("t"), DOMAINS).unwrap();
    assert_eq!(reopened.open("m", b"", &sealed).unwrap(), b"x");
    // A key file bound to another tenant name does not open.
    assert!(new.open_tenant_key(dir.path(), &tenant("u"), DOMAINS).is_err());
}

#[test]
fn name_tokens_cover_every_short_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let kek = MasterKey::from_bytes([1; 32]).kek(dir.path()).unwrap();
    let crypto = kek.create_tenant_key(dir.path(), &tenant("n"), DOMAINS).unwrap();
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
    assert!(matches!(MasterKey::from_text(&hex).unwrap().0, Secret::Key(_)));
    assert!(matches!(MasterKey::from_text("a phrase").unwrap().0, Secret::Passphrase(_)));
    assert!(MasterKey::from_text("  \n").is_err());
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    std::fs::write(&raw, [0x80u8; 32]).unwrap();
    assert!(matches!(MasterKey::from_file(&raw).unwrap().0, Secret::Key(_)));
    let text = dir.path().join("text");
    std::fs::write(&text, format!("{hex}\n")).unwrap();
    assert!(matches!(MasterKey::from_file(&text).unwrap().0, Secret::Key(_)));
    assert!(matches!(MasterKey::from_file(&dir.path().join("missing")), Err(Error::Crypto(_))));
}
