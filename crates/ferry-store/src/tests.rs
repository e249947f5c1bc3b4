use super::*;

fn account(name: &str) -> Account {
    Account {
        id: format!("id-{name}"),
        name: name.into(),
        home: name.into(),
        password_hash: Some(Secret::new("$argon2id$fake")),
        enabled: true,
        created_at: 1,
    }
}

fn transfer(id: &str, account: &str, started_at: i64) -> TransferRecord {
    TransferRecord {
        id: id.into(),
        account: account.into(),
        protocol: Protocol::Sftp,
        direction: Direction::Upload,
        path: "/a".into(),
        bytes: 10,
        sha256: Some("ab".into()),
        started_at,
        ended_at: started_at + 1,
        status: TransferStatus::Completed,
        node: "n1".into(),
        client_addr: "127.0.0.1:1".into(),
        error: None,
    }
}

#[test]
fn accounts_round_trip_and_names_are_unique() {
    let s = Store::open_in_memory().unwrap();
    s.apply(&Command::CreateAccount(account("alice"))).unwrap();
    let err = s
        .apply(&Command::CreateAccount(account("alice")))
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)));
    assert_eq!(s.account("alice").unwrap().unwrap(), account("alice"));
    s.apply(&Command::SetAccountEnabled {
        name: "alice".into(),
        enabled: false,
    })
    .unwrap();
    assert!(!s.account("alice").unwrap().unwrap().enabled);
    let err = s
        .apply(&Command::SetAccountEnabled {
            name: "bob".into(),
            enabled: false,
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)));
}

#[test]
fn keys_belong_to_accounts_and_go_with_them() {
    let s = Store::open_in_memory().unwrap();
    s.apply(&Command::CreateAccount(account("alice"))).unwrap();
    let key = AccountKey {
        account: "alice".into(),
        fingerprint: "SHA256:x".into(),
        public_key: "ssh-ed25519 AAAA".into(),
        comment: "c".into(),
        added_at: 2,
    };
    s.apply(&Command::AddAccountKey(key.clone())).unwrap();
    assert!(matches!(
        s.apply(&Command::AddAccountKey(key.clone())).unwrap_err(),
        StoreError::AlreadyExists(_)
    ));
    assert_eq!(s.account_keys("alice").unwrap(), vec![key.clone()]);
    s.apply(&Command::RemoveAccount {
        name: "alice".into(),
    })
    .unwrap();
    assert!(s.account_keys("alice").unwrap().is_empty());
    let mut orphan = key;
    orphan.account = "ghost".into();
    assert!(matches!(
        s.apply(&Command::AddAccountKey(orphan)).unwrap_err(),
        StoreError::NotFound(_)
    ));
}

#[test]
fn tokens_are_found_by_id_revoked_and_go_with_their_account() {
    let s = Store::open_in_memory().unwrap();
    s.apply(&Command::CreateAccount(account("alice"))).unwrap();
    s.apply(&Command::CreateAccount(account("bob"))).unwrap();
    let token = AccountToken {
        account: "alice".into(),
        id: "a1b2c3d4".into(),
        sha256: "00".repeat(32),
        label: "ci".into(),
        created_at: 5,
        expires_at: Some(99),
    };
    s.apply(&Command::AddAccountToken(token.clone())).unwrap();
    assert!(matches!(
        s.apply(&Command::AddAccountToken(token.clone()))
            .unwrap_err(),
        StoreError::AlreadyExists(_)
    ));
    assert_eq!(s.account_token("a1b2c3d4").unwrap(), Some(token.clone()));
    assert_eq!(s.account_tokens("alice").unwrap(), vec![token.clone()]);
    assert!(s.account_tokens("bob").unwrap().is_empty());
    // Another account cannot revoke it.
    let wrong = Command::RemoveAccountToken {
        account: "bob".into(),
        id: token.id.clone(),
    };
    assert!(matches!(
        s.apply(&wrong).unwrap_err(),
        StoreError::NotFound(_)
    ));
    s.apply(&Command::RemoveAccountToken {
        account: "alice".into(),
        id: token.id.clone(),
    })
    .unwrap();
    assert_eq!(s.account_token("a1b2c3d4").unwrap(), None);
    s.apply(&Command::AddAccountToken(token.clone())).unwrap();
    s.apply(&Command::RemoveAccount {
        name: "alice".into(),
    })
    .unwrap();
    assert_eq!(s.account_token("a1b2c3d4").unwrap(), None);
}

#[test]
fn transfers_are_written_once_and_filtered() {
    let s = Store::open_in_memory().unwrap();
    s.apply(&Command::RecordTransfer(transfer("t1", "alice", 100)))
        .unwrap();
    let mut replay = transfer("t1", "alice", 100);
    replay.node = "other".into();
    let out = s.apply(&Command::RecordTransfer(replay)).unwrap();
    assert_eq!(
        out.rows_changed, 0,
        "a replayed transfer id must not overwrite"
    );
    s.apply(&Command::RecordTransfer(transfer("t2", "bob", 200)))
        .unwrap();
    let all = s.list_transfers(&TransferFilter::default()).unwrap();
    assert_eq!(
        all.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["t2", "t1"]
    );
    assert_eq!(all[1].node, "n1");
    let alice = s
        .list_transfers(&TransferFilter {
            account: Some("alice".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(alice.len(), 1);
    let recent = s
        .list_transfers(&TransferFilter {
            since: Some(150),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(recent.len(), 1);
}

#[test]
fn reopening_a_file_keeps_data_and_refuses_newer_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.db");
    {
        let s = Store::open(&path).unwrap();
        s.apply(&Command::CreateAccount(account("alice"))).unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert!(s.account("alice").unwrap().is_some());
    drop(s);
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    assert!(matches!(
        Store::open(&path).unwrap_err(),
        StoreError::TooNew { .. }
    ));
}
