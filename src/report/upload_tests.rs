use super::*;
use crate::flist::store::objects::ObjectKey;

#[test]
fn node_ids_prefer_the_configured_then_the_hardware() {
    let macs = vec!["52:54:00:AB:CD:02".to_string(), "52:54:00:ab:cd:01".into()];
    assert_eq!(node_id(Some("rack7-n3"), None, &macs, "h"), "rack7-n3");
    assert_eq!(
        node_id(
            None,
            Some("4C4C4544-0051-3010-8052-B4C04F564433\n"),
            &macs,
            "h"
        ),
        "4c4c4544-0051-3010-8052-b4c04f564433"
    );
    // A blank firmware UUID (QEMU without -uuid, many boards) says nothing.
    for blank in [
        "00000000-0000-0000-0000-000000000000",
        "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
        "",
    ] {
        assert_eq!(node_id(None, Some(blank), &macs, "h"), "mac-525400abcd01");
    }
    assert_eq!(node_id(None, None, &[], "zos node/1"), "zos-node-1");
    assert_eq!(node_id(None, None, &[], "../.."), "unknown-node");
    let id = node_id(None, None, &[], &"x".repeat(200));
    assert_eq!(id.len(), 64);
}

#[test]
fn keys_and_pci_ids() {
    let identity = Identity {
        node: "mac-525400abcd01".into(),
        boot: "5f3e0c52-1d7a-4f3b-9c1e-2a6b8d9e0f11".into(),
    };
    assert_eq!(
        key(&identity).unwrap().as_str(),
        "reports/mac-525400abcd01/5f3e0c52-1d7a-4f3b-9c1e-2a6b8d9e0f11.json"
    );
    assert_eq!(
        pci_id("pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00").as_deref(),
        Some("8086:100e")
    );
    assert_eq!(pci_id("pci:v00008086"), None);
    assert_eq!(pci_id("acpi:PNP0A03:"), None);
    assert_eq!(pci_id("pci:vZZ"), None);
}

#[test]
fn firmware_the_kernel_did_not_get_is_found_in_its_log() {
    let lines: Vec<String> = [
        "[    3.101] r8169 0000:03:00.0: Direct firmware load for rtl_nic/rtl8168h-2.fw failed with error -2",
        "[    3.102] r8169 0000:03:00.0: Direct firmware load for rtl_nic/rtl8168h-2.fw failed with error -2",
        "iwlwifi 0000:00:14.3: Direct firmware load for iwlwifi-so-a0-gf-a0-72.ucode failed with error -2",
        "[    3.200] unrelated line",
        "Direct firmware load for",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let found = missing_firmware(&lines);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].file, "rtl_nic/rtl8168h-2.fw");
    assert_eq!(
        (found[0].driver.as_str(), found[0].device.as_str()),
        ("r8169", "0000:03:00.0")
    );
    assert_eq!(found[1].driver, "iwlwifi");
}

#[test]
fn a_report_goes_into_a_directory_store_whole_with_no_credential() {
    let dir = std::env::temp_dir().join(format!("initagent-upload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut report = Report {
        agent_version: "t".into(),
        ..Report::default()
    };
    report
        .warnings
        .push("store s3://AK:SECRET@host/b unreachable".into());
    let identity = Identity {
        node: "n1".into(),
        boot: "b1".into(),
    };
    let envelope = envelope(&report, &identity, 1_700_000_000, vec![], vec![], vec![]);
    let url = format!("dir://{}", dir.display());
    let key = send(&url, &StoreOptions::default(), &envelope).unwrap();
    assert_eq!(key.as_str(), "reports/n1/b1.json");
    let stored = std::fs::read_to_string(dir.join("reports/n1/b1.json")).unwrap();
    assert!(!stored.contains("SECRET"), "{stored}");
    let back: Envelope = serde_json::from_str(&stored).unwrap();
    assert_eq!((back.node.as_str(), back.sent_at), ("n1", 1_700_000_000));
    // No temporary file is left beside it, and the store lists it.
    let names: Vec<_> = std::fs::read_dir(dir.join("reports/n1")).unwrap().collect();
    assert_eq!(names.len(), 1);
    let store = crate::flist::store::open(&url, &StoreOptions::default()).unwrap();
    let listed = store
        .list_objects(&ObjectKey::new("reports").unwrap())
        .unwrap();
    assert_eq!(listed, vec![key.clone()]);
    assert_eq!(store.get_object(&key).unwrap(), stored.as_bytes());
    // A store that cannot take it says which and why, without the secret.
    let error = send(
        "zdb://AK:SECRET@127.0.0.1:1/ns",
        &StoreOptions::default(),
        &envelope,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("cannot be written") && !error.contains("SECRET"),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
