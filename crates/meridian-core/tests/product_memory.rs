//! Reading a product does not keep the whole file resident: the mapped pages
//! already read are given back as the reader goes (a full-scale day's
//! `match.mprod` is gigabytes). Alone in its test binary so that no other test
//! moves this process's resident set meanwhile.

use meridian_core::ProductReader;
use meridian_core::product::ProductWriter;
use meridian_core::records::UnknownPacket;
use meridian_core::resources;

/// Octets that zstd cannot shrink much (xorshift64*).
fn noise(state: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *state ^= *state >> 12;
            *state ^= *state << 25;
            *state ^= *state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

#[test]
fn reading_a_large_product_keeps_little_of_it_resident() {
    if resources::peak_rss_bytes().is_none() || resources::resident_bytes().is_none() {
        eprintln!("no /proc memory accounting here: nothing to check");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.mprod");
    let mut writer = ProductWriter::<UnknownPacket>::create(&path).unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for seq in 0..160u16 {
        let record = UnknownPacket {
            delivery: "d".into(),
            apid: 0x3FF,
            service: None,
            subtype: None,
            seq,
            obt_ns: None,
            bytes: noise(&mut state, 512 << 10),
            offset: 0,
        };
        writer.push(&record).unwrap();
    }
    writer.finish().unwrap();
    let file_mib = std::fs::metadata(&path).unwrap().len() >> 20;
    assert!(file_mib >= 80, "the file must be large: {file_mib} MiB");

    let before = resources::resident_bytes().unwrap();
    resources::reset_peak_rss();
    let mut read = 0;
    for record in ProductReader::<UnknownPacket>::open(&path).unwrap() {
        assert_eq!(record.unwrap().seq, read);
        read += 1;
    }
    assert_eq!(read, 160);
    let grew_mib = resources::peak_rss_bytes().unwrap().saturating_sub(before) >> 20;
    assert!(
        grew_mib < 64,
        "reading a {file_mib} MiB product raised the peak by {grew_mib} MiB"
    );
}
