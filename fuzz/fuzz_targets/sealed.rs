//! Opening sealed values: a value sealed for one tenant, column family and key opens there to
//! exactly its plaintext; any change to its bytes (a flipped bit, a cut, bytes added), or
//! opening it under another key, column family or tenant, is rejected; arbitrary bytes never
//! open and never panic.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use percolate::fuzzing::Sealer;

#[derive(Arbitrary, Debug)]
enum Tamper {
    /// Flip the bits of `mask` in byte `at` (modulo the length).
    Flip { at: u16, mask: u8 },
    /// Keep only the first `at` bytes (modulo the length).
    Truncate { at: u16 },
    /// Append bytes.
    Extend { tail: Vec<u8> },
    /// Open under another key.
    OtherKey { key: Vec<u8> },
    /// Open in another column family.
    OtherDomain,
    /// Open as another tenant.
    OtherTenant,
}

#[derive(Arbitrary, Debug)]
struct Input {
    data_key: [u8; 32],
    key: Vec<u8>,
    plaintext: Vec<u8>,
    tamper: Tamper,
    raw: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let Some(sealer) = Sealer::new("tenant-a", input.data_key) else { return };
    let Some(other_tenant) = Sealer::new("tenant-b", input.data_key) else { return };
    // Arbitrary bytes are not a value sealed by this key (forging one is breaking the AEAD).
    assert!(sealer.open("resources", &input.key, &input.raw).is_err() || input.raw.is_empty());

    let sealed = sealer.seal("resources", &input.key, &input.plaintext).expect("a value seals");
    let opened = sealer.open("resources", &input.key, &sealed).expect("a sealed value opens");
    assert_eq!(opened, input.plaintext, "opens to its plaintext");
    if input.plaintext.is_empty() {
        // Empty values are stored empty: nothing to hide or to tamper with.
        assert!(sealed.is_empty());
        return;
    }
    let rejected = match input.tamper {
        Tamper::Flip { at, mask } => {
            let mut bytes = sealed.clone();
            let at = usize::from(at) % bytes.len();
            bytes[at] ^= mask.max(1);
            sealer.open("resources", &input.key, &bytes).is_err()
        }
        Tamper::Truncate { at } => {
            let at = usize::from(at) % sealed.len();
            // An empty value is the (unsealed) empty value: it opens to nothing, never to the
            // plaintext.
            match sealer.open("resources", &input.key, &sealed[..at]) {
                Ok(bytes) => at == 0 && bytes.is_empty(),
                Err(_) => true,
            }
        }
        Tamper::Extend { tail } => {
            let mut bytes = sealed.clone();
            bytes.extend_from_slice(&tail);
            tail.is_empty() || sealer.open("resources", &input.key, &bytes).is_err()
        }
        Tamper::OtherKey { key } => {
            key == input.key || sealer.open("resources", &key, &sealed).is_err()
        }
        Tamper::OtherDomain => sealer.open("entities", &input.key, &sealed).is_err(),
        Tamper::OtherTenant => other_tenant.open("resources", &input.key, &sealed).is_err(),
    };
    assert!(rejected, "a tampered or moved value opened");
});
