//! Unit tests of the export format.
use super::*;

#[test]
fn metadata_keys_serialize_sorted() {
    // Canonical exports rely on serde_json's map being ordered by key. The `preserve_order`
    // feature would keep insertion order instead and break byte-identical exports.
    let mut metadata = Metadata::new();
    metadata.insert("zeta".into(), serde_json::json!(1));
    metadata.insert("alpha".into(), serde_json::json!(2));
    let text = serde_json::to_string(&metadata).expect("serialize");
    assert_eq!(text, r#"{"alpha":2,"zeta":1}"#);
}

#[test]
fn a_tagged_line_in_any_key_order_parses() {
    let id = crate::model::EntityId::new();
    let canonical = format!(
        r#"{{"type":"entity","id":"{id}","name":"Ada","kind":"person","properties":{{}},"created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z"}}"#
    );
    let shuffled = format!(
        r#"{{"name":"Ada","id":"{id}","type":"entity","kind":"person","created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z"}}"#
    );
    let a = parse_record(canonical.as_bytes()).expect("canonical");
    let b = parse_record(shuffled.as_bytes()).expect("shuffled");
    assert_eq!(a, b);
    assert_eq!(serde_json::to_string(&a).expect("serialize"), canonical);
}

/// A small export built by hand: resources (one with nested metadata of every JSON type
/// and one without an embedding), two entities, an edge between them and a moment.
fn sample() -> (Vec<u8>, Vec<Record>) {
    use crate::model::{Edge, EdgeId, Entity, Moment, MomentId};
    let at = Timestamp::from_micros(1_700_000_000_000_000);
    let metadata: Metadata = serde_json::from_str(
        r#"{"a":[1,-2,2.5,1e300,0.30000000000000004,"x",null,true,false],"b":{"c":{}},"u":18446744073709551615}"#,
    )
    .expect("metadata");
    let mut records = Vec::new();
    for i in 0..3u8 {
        records.push(Record::Resource(Resource {
            id: ResourceId::from_bytes([i + 1; 16]),
            uri: (i == 1).then(|| "file:///a".to_owned()),
            content: format!("resource {i}: \"quoted\" \\ \n and more"),
            metadata: if i == 0 { metadata.clone() } else { Metadata::new() },
            embedding: (i != 2).then(|| vec![0.1, -0.2 * f32::from(i), 3.4e-7]),
            created_at: at,
            updated_at: at,
        }));
    }
    let entities = [EntityId::from_bytes([7; 16]), EntityId::from_bytes([8; 16])];
    for (n, id) in entities.iter().enumerate() {
        records.push(Record::Entity(Entity {
            id: *id,
            name: format!("Entity {n}"),
            kind: "person".into(),
            properties: Metadata::new(),
            created_at: at,
            updated_at: at,
        }));
    }
    records.push(Record::Edge(Edge {
        id: EdgeId::from_bytes([9; 16]),
        from: entities[0],
        to: entities[1],
        relation: "knows".into(),
        weight: 0.5,
        properties: Metadata::new(),
        created_at: at,
    }));
    records.push(Record::Moment(Moment {
        id: MomentId::from_bytes([10; 16]),
        start: at,
        end: at,
        kind: "meeting".into(),
        content: "met".into(),
        entities: entities.iter().copied().collect(),
        metadata: Metadata::new(),
    }));
    let header = Header {
        format: FORMAT.into(),
        version: FORMAT_VERSION,
        tenant: TenantId::new("acme").expect("tenant"),
        dimension: Some(3),
        metric: Metric::default(),
        counts: Counts { resources: 3, entities: 2, edges: 1, moments: 1 },
    };
    let mut bytes = serde_json::to_vec(&header).expect("header");
    bytes.push(b'\n');
    for record in &records {
        serde_json::to_writer(&mut bytes, record).expect("record");
        bytes.push(b'\n');
    }
    let trailer = Trailer { records: records.len() as u64, sha256: hex(&Sha256::digest(&bytes)) };
    serde_json::to_writer(&mut bytes, &trailer).expect("trailer");
    bytes.push(b'\n');
    (bytes, records)
}

/// What [`check_file`] says about `bytes` read `chunk` bytes at a time: the records it
/// accepted, with their lines, or its error.
fn check_bytes(bytes: &[u8], chunk: usize) -> std::result::Result<Vec<(u64, Record)>, String> {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(bytes).expect("write");
    let mut accepted = Vec::new();
    check_file(file.path(), chunk, MAX_LINE_BYTES, |record, number| {
        accepted.push((number, record));
        Ok(())
    })
    .map(|_| accepted)
    .map_err(|e| e.to_string())
}

#[test]
fn verification_does_not_depend_on_where_chunks_end() {
    let (bytes, records) = sample();
    let expected: Vec<(u64, Record)> = (2..).zip(records).collect();
    let lines: Vec<usize> =
        bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1).collect();
    let damaged = {
        let mut damaged = bytes.clone();
        damaged[lines[2] + 30] ^= 1;
        damaged
    };
    let mut broken_record = bytes[..lines[3]].to_vec();
    broken_record.extend_from_slice(b"{\"type\":\"entity\"}\n");
    broken_record.extend_from_slice(&bytes[lines[3]..]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("whole", bytes.clone()),
        ("cut mid-record", bytes[..lines[4] + 17].to_vec()),
        ("no trailer", bytes[..lines[lines.len() - 2]].to_vec()),
        ("no final newline", bytes[..bytes.len() - 1].to_vec()),
        ("header only", bytes[..lines[0]].to_vec()),
        ("damaged", damaged),
        ("a bad record", broken_record),
    ];
    for (name, case) in &cases {
        let reference = check_bytes(case, CHUNK);
        if *name == "whole" {
            assert_eq!(reference.as_ref().expect("whole file"), &expected);
        } else {
            assert!(reference.is_err(), "{name} passed");
        }
        for chunk in (1..=lines[2] + 3).step_by(7).chain([0, bytes.len(), bytes.len() + 1]) {
            assert_eq!(check_bytes(case, chunk), reference, "{name}, chunks of {chunk}");
        }
    }
}

#[test]
fn the_import_spool_gives_back_exactly_what_was_parsed() {
    let (_, records) = sample();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spool = RecordSpool::create(&dir.path().join("input.jsonl")).expect("spool");
    for (number, record) in (2..).zip(&records) {
        spool.push(record, number).expect("push");
    }
    let mut reader = SpoolReader { input: BufReader::new(spool.finish().expect("finish")) };
    let mut back = Vec::new();
    while let Some(entry) = reader.next().expect("read") {
        back.push(entry);
    }
    let expected: Vec<(u64, Record)> = (2..).zip(records).collect();
    assert_eq!(back, expected);
    // Bit for bit, floats included: equal records serialise to the same bytes.
    for ((_, a), (_, b)) in back.iter().zip(&expected) {
        assert_eq!(serde_json::to_string(a).expect("a"), serde_json::to_string(b).expect("b"));
    }
}

#[test]
fn hex_is_lowercase_and_padded() {
    assert_eq!(hex(&[0x00, 0x0f, 0xab]), "000fab");
}

/// A line without an end is refused once it passes the cap, before it is held in memory
/// whole, and a header line has a cap of its own.
#[test]
fn over_long_lines_are_refused_before_they_are_held() {
    let (bytes, _) = sample();
    let header_end = bytes.iter().position(|b| *b == b'\n').expect("header") + 1;
    let mut endless = bytes[..header_end].to_vec();
    endless.extend(std::iter::repeat_n(b'x', 64 << 10));
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(&endless).expect("write");
    let refused = check_file(file.path(), 4096, 16 << 10, |_, _| Ok(())).expect_err("refused");
    assert!(refused.to_string().contains("a line is longer than 16384 bytes"), "{refused}");
    // Under the cap the same file is refused for what it is (no trailer), not its length.
    let other = check_file(file.path(), 4096, 1 << 20, |_, _| Ok(())).expect_err("refused");
    assert!(!other.to_string().contains("longer than"), "{other}");

    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(&vec![b'{'; MAX_HEADER_BYTES + 10]).expect("write");
    let refused = verify(file.path()).expect_err("refused");
    assert!(refused.to_string().contains("the header is longer than"), "{refused}");
}
