//! `include` as current docker compose reads it: a service the including file declares again is laid over the
//! included one (compose-go, Nov 2025), the including file winning; the included parts keep their own paths.

use orch_compose::{LoadOptions, load};

#[test]
fn an_including_file_overrides_an_included_service_with_the_merge_rules() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("db")).unwrap();
    std::fs::write(
        dir.path().join("db/compose.yaml"),
        "services:\n  db:\n    build: ./image\n    environment: { A: '1', B: '2' }\n    ports: ['5432']\n  cache:\n    image: redis\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "include: [db/compose.yaml]\nservices:\n  app:\n    image: app\n  db:\n    depends_on: [cache]\n    environment: { B: '3' }\n",
    )
    .unwrap();
    let loaded = load(&LoadOptions { files: vec![dir.path().join("compose.yaml")], ..Default::default() }).unwrap();
    let db = &loaded.project.services["db"];
    assert_eq!(db.build.as_ref().unwrap().context, dir.path().join("db/image"), "the included file's paths stay its own");
    assert_eq!(db.environment["A"].as_deref(), Some("1"));
    assert_eq!(db.environment["B"].as_deref(), Some("3"), "the including file wins");
    assert!(db.depends_on.contains_key("cache"));
    assert_eq!(db.ports.len(), 1);
    assert_eq!(loaded.project.services.len(), 3);
}
