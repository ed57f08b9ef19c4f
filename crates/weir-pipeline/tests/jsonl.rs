//! JSON Lines decoding.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

#[test]
fn jsonl_lines_become_events_or_dead_letters() {
    use weir_pipeline::jsonl::JsonlFormat;
    let input =
        "{\"key\":\"a\",\"timestamp\":5,\"amount\":1}\nnot json\n{\"key\":7,\"timestamp\":6}\n{\"key\":\"a\"}\n";
    let parsed = JsonlFormat::default().read_all(std::io::Cursor::new(input)).unwrap();
    assert_eq!(parsed.len(), 4);
    let ok: Vec<_> = parsed.iter().filter_map(|p| p.as_ref().ok()).map(|e| (e.key.clone(), e.timestamp_ms)).collect();
    assert_eq!(ok, vec![(Some("a".into()), 5), (Some("7".into()), 6)]);
    assert_eq!(parsed.iter().filter(|p| p.is_err()).count(), 2);
}
