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
        size: None,
        sha256: Some("ab".into()),
        started_at,
        ended_at: started_at + 1,
        status: TransferStatus::Completed,
        node: "n1".into(),
        client_addr: "127.0.0.1:1".into(),
        error: None,
        partner: None,
        event_id: None,
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
fn browser_sessions_are_not_api_tokens_and_expired_ones_are_swept() {
    let s = Store::open_in_memory().unwrap();
    s.apply(&Command::CreateAccount(account("alice"))).unwrap();
    let token = |id: &str, created_at, expires_at| AccountToken {
        account: "alice".into(),
        id: id.into(),
        sha256: "00".repeat(32),
        label: "browser session".into(),
        created_at,
        expires_at: Some(expires_at),
    };
    let api = AccountToken {
        label: "ci".into(),
        ..token("a1b2c3d4e5f6", 1, 50)
    };
    s.apply(&Command::AddAccountToken(api.clone())).unwrap();
    let old = token("web-000000000001", 10, 100);
    let live = token("web-000000000002", 20, 1000);
    s.apply(&Command::AddAccountToken(old.clone())).unwrap();
    s.apply(&Command::AddAccountToken(live.clone())).unwrap();
    assert_eq!(s.account_tokens("alice").unwrap(), vec![api.clone()]);
    assert_eq!(
        s.account_web_sessions("alice").unwrap(),
        vec![old.clone(), live.clone()]
    );
    // A browser login at 100 sweeps the session that expired then, not
    // the live one, and never an API token (however expired).
    let new = token("web-000000000003", 100, 2000);
    s.apply(&Command::AddAccountToken(new.clone())).unwrap();
    assert_eq!(s.account_web_sessions("alice").unwrap(), vec![live, new]);
    assert_eq!(s.account_token(&old.id).unwrap(), None);
    assert_eq!(s.account_tokens("alice").unwrap(), vec![api]);
}

#[test]
fn transfer_search_filters_and_pages_by_keyset() {
    let s = Store::open_in_memory().unwrap();
    // Ten rows, two of them at the same millisecond (the id breaks the tie).
    for (i, at) in [100, 200, 300, 300, 400, 500, 600, 700, 800, 900]
        .into_iter()
        .enumerate()
    {
        let mut t = transfer(
            &format!("t{i}"),
            if i % 2 == 0 { "alice" } else { "bob" },
            at,
        );
        t.path = format!("/in/Report-{i}.csv");
        if i == 3 {
            t.protocol = Protocol::Https;
        }
        s.apply(&Command::RecordTransfer(t)).unwrap();
    }
    let ids = |f: &TransferFilter| {
        s.list_transfers(f)
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect::<Vec<_>>()
    };
    // Pages of three, each after the last row of the one before: every
    // row once, in order, the tie included.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = s
            .list_transfers(&TransferFilter {
                limit: Some(3),
                before: before.clone(),
                ..Default::default()
            })
            .unwrap();
        let Some(last) = page.last() else { break };
        before = Some((last.started_at, last.id.clone()));
        seen.extend(page.into_iter().map(|t| t.id));
    }
    assert_eq!(
        seen,
        ["t9", "t8", "t7", "t6", "t5", "t4", "t3", "t2", "t1", "t0"]
    );
    // The name matches a part of the path, ignoring ASCII case.
    let by_name = TransferFilter {
        name: Some("report-1".into()),
        ..Default::default()
    };
    assert_eq!(ids(&by_name), ["t1"]);
    let by_protocol = TransferFilter {
        protocol: Some("https".into()),
        ..Default::default()
    };
    assert_eq!(ids(&by_protocol), ["t3"]);
    let range = TransferFilter {
        since: Some(300),
        until: Some(500),
        account: Some("bob".into()),
        ..Default::default()
    };
    assert_eq!(ids(&range), ["t3"]);
    // A name with LIKE's wildcards matches them literally.
    for wild in ["%", "_", "\\", "report_1"] {
        let f = TransferFilter {
            name: Some(wild.into()),
            ..Default::default()
        };
        assert!(ids(&f).is_empty(), "{wild}");
    }
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
fn an_unflushed_row_leaves_every_later_commit_waiting_for_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("ferry.db")).unwrap();
    let synchronous = |s: &Store| -> i64 {
        s.conn()
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(synchronous(&s), 2, "FULL from the start");
    let out = s
        .apply_unflushed(&Command::RecordTransfer(transfer("t1", "alice", 100)))
        .unwrap();
    assert_eq!(out.rows_changed, 1);
    assert_eq!(synchronous(&s), 2, "FULL again after the row");
    // A command that fails leaves the setting restored as well.
    s.apply(&Command::CreateAccount(account("alice"))).unwrap();
    s.apply_unflushed(&Command::CreateAccount(account("alice")))
        .unwrap_err();
    assert_eq!(synchronous(&s), 2, "FULL again after a refused command");
    assert_eq!(
        s.list_transfers(&TransferFilter::default()).unwrap().len(),
        1
    );
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

mod engine {
    use super::*;
    use ferry_core::{
        Action, AfterPull, AttemptResult, Event, EventKind, EventStatus, Partner, Route, Schedule,
        ScheduleAction,
    };

    fn partner(name: &str) -> Partner {
        Partner {
            name: name.into(),
            host: "127.0.0.1".into(),
            port: 22,
            username: "u".into(),
            password_sealed: Some("sealed".into()),
            private_key_sealed: None,
            host_key: "ssh-ed25519 AAAA".into(),
            remote_dir: "/in".into(),
            after_pull: AfterPull::Delete,
            rate_limit: None,
            created_at: 1,
        }
    }

    fn setup() -> Store {
        let s = Store::open_in_memory().unwrap();
        s.apply(&Command::CreateAccount(account("alice"))).unwrap();
        s.apply(&Command::AddPartner(partner("acme"))).unwrap();
        s.apply(&Command::AddRoute(Route {
            name: "csv-to-acme".into(),
            account: "alice".into(),
            pattern: "*.csv".into(),
            actions: vec!["push:acme".parse().unwrap()],
            max_attempts: 2,
            retry_base_ms: 100,
            created_at: 1,
        }))
        .unwrap();
        s
    }

    fn claim(s: &Store, id: &str, node: &str, now: i64) -> usize {
        s.apply(&Command::ClaimEvent {
            id: id.into(),
            node: node.into(),
            now,
            lease_until: now + 1000,
        })
        .unwrap()
        .rows_changed
    }

    #[test]
    fn a_completed_upload_queues_one_event_per_matching_route_once() {
        let s = setup();
        let mut t = transfer("t1", "alice", 10);
        t.path = "/in/a.csv".into();
        s.apply(&Command::RecordTransfer(t.clone())).unwrap();
        // A replay of the same command queues nothing more.
        s.apply(&Command::RecordTransfer(t)).unwrap();
        let mut other = transfer("t2", "alice", 20);
        other.path = "/in/a.txt".into();
        s.apply(&Command::RecordTransfer(other)).unwrap();
        let mut failed = transfer("t3", "alice", 30);
        failed.path = "/b.csv".into();
        failed.status = TransferStatus::Interrupted;
        s.apply(&Command::RecordTransfer(failed)).unwrap();

        let events = s.events(&EventFilter::default()).unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.kind, EventKind::Upload);
        assert_eq!(e.route.as_deref(), Some("csv-to-acme"));
        assert_eq!(e.transfer_id.as_deref(), Some("t1"));
        assert_eq!(e.partners, vec!["acme".to_owned()]);
        assert_eq!(e.status, EventStatus::Pending);
        let by_partner = EventFilter {
            partner: Some("acme".into()),
            ..Default::default()
        };
        assert_eq!(s.events(&by_partner).unwrap().len(), 1);
        let by_other = EventFilter {
            partner: Some("acm".into()),
            ..Default::default()
        };
        assert!(s.events(&by_other).unwrap().is_empty());
        assert_eq!(s.events_of_transfer("t1").unwrap().len(), 1);
    }

    #[test]
    fn leases_keep_an_event_with_one_node_until_they_expire() {
        let s = setup();
        let mut t = transfer("t1", "alice", 10);
        t.path = "/a.csv".into();
        s.apply(&Command::RecordTransfer(t)).unwrap();
        let id = s.events(&EventFilter::default()).unwrap()[0].id.clone();
        assert_eq!(
            s.claimable_events(crate::Lane::Transfers, 11, 10).unwrap(),
            vec![id.clone()]
        );

        assert_eq!(claim(&s, &id, "n1", 100), 1);
        assert_eq!(claim(&s, &id, "n2", 200), 0, "lease held by n1");
        assert!(s
            .claimable_events(crate::Lane::Transfers, 200, 10)
            .unwrap()
            .is_empty());
        // n1 goes quiet; after its lease n2 takes over, and n1's late finish is refused.
        assert_eq!(claim(&s, &id, "n2", 1101), 1);
        let late = s
            .apply(&Command::FinishAttempt {
                id: id.clone(),
                node: "n1".into(),
                attempt: 1,
                now: 1200,
                result: AttemptResult::Done,
            })
            .unwrap();
        assert_eq!(late.rows_changed, 0);
        let attempts = s.event_attempts(&id).unwrap();
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[0].outcome.as_deref(), Some("lease expired"));
        assert_eq!(attempts[1].node, "n2");

        // n2 fails with a retry; it is pending again, due later.
        s.apply(&Command::FinishAttempt {
            id: id.clone(),
            node: "n2".into(),
            attempt: 2,
            now: 1300,
            result: AttemptResult::Retry {
                next_at: 5000,
                error: "partner down".into(),
            },
        })
        .unwrap();
        let e = s.event(&id).unwrap().unwrap();
        assert_eq!(e.status, EventStatus::Pending);
        assert_eq!(e.last_error.as_deref(), Some("partner down"));
        assert_eq!(claim(&s, &id, "n1", 4999), 0, "not due yet");
        assert_eq!(
            s.next_claimable_at(crate::Lane::Transfers).unwrap(),
            Some(5000)
        );
    }

    fn notify_setup() -> Store {
        let s = setup();
        s.apply(&Command::AddNotifyEndpoint(ferry_core::NotifyEndpoint {
            name: "ops".into(),
            target: ferry_core::NotifyTarget::Webhook {
                url: "http://127.0.0.1:9/hook".into(),
            },
            secret_sealed: None,
            ca_pem: None,
            link_base: None,
            max_attempts: 3,
            retry_base_ms: 1000,
            created_at: 1,
        }))
        .unwrap();
        for (name, on, partner) in [
            ("failed", "event-failed", Some("acme")),
            ("retrying", "event-retrying:1", None),
            ("other-partner", "event-failed", Some("zeta")),
            ("done", "transfer-done", None),
        ] {
            s.apply(&Command::AddNotifyRule(ferry_core::NotifyRule {
                name: name.into(),
                trigger: on.parse().unwrap(),
                account: Some("alice".into()),
                route: None,
                partner: partner.map(Into::into),
                endpoint: "ops".into(),
                created_at: 1,
            }))
            .unwrap();
        }
        s
    }

    fn notices(s: &Store) -> Vec<Event> {
        let mut notices: Vec<Event> = s
            .events(&EventFilter::default())
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == EventKind::Notify)
            .collect();
        notices.sort_by(|a, b| {
            a.notice
                .as_ref()
                .unwrap()
                .rule
                .cmp(&b.notice.as_ref().unwrap().rule)
        });
        notices
    }

    #[test]
    fn notices_are_raised_once_per_rule_and_cause_and_only_by_matching_rules() {
        let s = notify_setup();
        let mut t = transfer("t1", "alice", 10);
        t.path = "/a.csv".into();
        s.apply(&Command::RecordTransfer(t.clone())).unwrap();
        s.apply(&Command::RecordTransfer(t)).unwrap();
        let raised = notices(&s);
        assert_eq!(raised.len(), 1, "one transfer-done notice, not two");
        let n = raised[0].notice.as_ref().unwrap();
        assert_eq!(
            (n.rule.as_str(), n.trigger.as_str()),
            ("done", "transfer-done")
        );
        assert_eq!(n.file.as_deref(), Some("/a.csv"));
        assert_eq!(
            s.claimable_events(crate::Lane::Notices { skip: &[] }, 100, 10)
                .unwrap(),
            vec![raised[0].id.clone()]
        );
        // A worker skips endpoints this server is sending to already.
        let busy = ["ops".to_owned()];
        let skipping = crate::Lane::Notices { skip: &busy };
        assert!(s.claimable_events(skipping, 100, 10).unwrap().is_empty());
        assert_eq!(s.next_claimable_at(skipping).unwrap(), None);

        let id = s
            .events(&EventFilter::default())
            .unwrap()
            .into_iter()
            .find(|e| e.kind == EventKind::Upload)
            .unwrap()
            .id;
        assert_eq!(
            s.claimable_events(crate::Lane::Transfers, 100, 10).unwrap(),
            vec![id.clone()]
        );
        let finish = |attempt: u32, now: i64, result: AttemptResult| {
            s.apply(&Command::FinishAttempt {
                id: id.clone(),
                node: "n1".into(),
                attempt,
                now,
                result,
            })
            .unwrap()
        };
        assert_eq!(claim(&s, &id, "n1", 100), 1);
        let retry = AttemptResult::Retry {
            next_at: 200,
            error: "partner down".into(),
        };
        finish(1, 150, retry.clone());
        finish(1, 150, retry);
        assert_eq!(notices(&s).len(), 2, "retrying:1 raised once");
        assert_eq!(claim(&s, &id, "n1", 300), 1);
        finish(
            2,
            350,
            AttemptResult::Failed {
                error: "partner down".into(),
            },
        );
        let raised = notices(&s);
        let rules: Vec<&str> = raised
            .iter()
            .map(|e| e.notice.as_ref().unwrap().rule.as_str())
            .collect();
        assert_eq!(
            rules,
            ["done", "failed", "retrying"],
            "not the rule of another partner"
        );
        let failed = raised[1].notice.as_ref().unwrap();
        assert_eq!(failed.error.as_deref(), Some("partner down"));
        assert_eq!(failed.attempts, Some(2));
        assert_eq!(failed.event_id.as_deref(), Some(id.as_str()));
        assert!(
            failed
                .summary
                .contains("route csv-to-acme failed on /a.csv"),
            "{}",
            failed.summary
        );

        // A notification that fails raises nothing itself.
        let notice_id = raised[1].id.clone();
        for attempt in 1..=3 {
            assert_eq!(claim(&s, &notice_id, "n1", 10_000 * attempt as i64), 1);
            s.apply(&Command::FinishAttempt {
                id: notice_id.clone(),
                node: "n1".into(),
                attempt,
                now: 10_000 * attempt as i64 + 1,
                result: AttemptResult::Failed { error: "no".into() },
            })
            .unwrap();
            if s.event(&notice_id).unwrap().unwrap().status == EventStatus::Failed {
                break;
            }
        }
        assert_eq!(notices(&s).len(), 3);
        // An endpoint in use cannot be removed.
        assert!(s
            .apply(&Command::RemoveNotifyEndpoint { name: "ops".into() })
            .is_err());
    }

    #[test]
    fn a_restarted_node_releases_its_leases_and_the_last_expired_lease_fails() {
        let s = setup();
        let mut t = transfer("t1", "alice", 10);
        t.path = "/a.csv".into();
        s.apply(&Command::RecordTransfer(t)).unwrap();
        let id = s.events(&EventFilter::default()).unwrap()[0].id.clone();
        assert_eq!(claim(&s, &id, "n1", 100), 1);
        s.apply(&Command::ReleaseNodeLeases {
            node: "n1".into(),
            now: 150,
        })
        .unwrap();
        assert_eq!(claim(&s, &id, "n1", 160), 1, "claimable at once");
        // max_attempts is 2: an expired lease on the second attempt fails it.
        assert_eq!(claim(&s, &id, "n2", 5000), 0);
        let e = s.event(&id).unwrap().unwrap();
        assert_eq!(e.status, EventStatus::Failed);
    }

    #[test]
    fn a_late_release_keeps_the_leases_of_the_new_run() {
        let s = setup();
        for (id, path) in [("t1", "/a.csv"), ("t2", "/b.csv")] {
            let mut t = transfer(id, "alice", 10);
            t.path = path.into();
            s.apply(&Command::RecordTransfer(t)).unwrap();
        }
        let ids: Vec<String> = s
            .events(&EventFilter::default())
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        // The previous run claimed the first; the new run started at 150,
        // its release waited for a quorum, and meanwhile it claimed the
        // second at 160.
        assert_eq!(claim(&s, &ids[0], "n1", 100), 1);
        assert_eq!(claim(&s, &ids[1], "n1", 160), 1);
        let released = s
            .apply(&Command::ReleaseNodeLeases {
                node: "n1".into(),
                now: 150,
            })
            .unwrap();
        assert_eq!(released.rows_changed, 1);
        assert_eq!(claim(&s, &ids[0], "n2", 170), 1, "the old lease ended");
        assert_eq!(claim(&s, &ids[1], "n2", 170), 0, "the new lease holds");
    }

    #[test]
    fn each_schedule_slot_fires_once() {
        let s = setup();
        s.apply(&Command::AddSchedule(Schedule {
            name: "pull".into(),
            cron: "*/2 * * * * *".into(),
            timezone: "UTC".into(),
            action: "pull:acme:alice".parse::<ScheduleAction>().unwrap(),
            catch_up: true,
            max_attempts: 3,
            retry_base_ms: 100,
            created_at: 1,
        }))
        .unwrap();
        let fire = |slot: i64, event: &str, node: &str| {
            s.apply(&Command::FireSchedule {
                schedule: "pull".into(),
                slot,
                node: node.into(),
                term: 0,
                event: Event {
                    id: event.into(),
                    kind: EventKind::Schedule,
                    route: None,
                    schedule: Some("pull".into()),
                    slot: Some(slot),
                    account: Some("alice".into()),
                    path: None,
                    transfer_id: None,
                    partners: vec!["acme".into()],
                    status: EventStatus::Pending,
                    attempts: 0,
                    max_attempts: 3,
                    retry_base_ms: 100,
                    next_at: slot,
                    lease_node: None,
                    lease_until: None,
                    steps_done: 0,
                    current_path: None,
                    created_at: slot,
                    updated_at: slot,
                    last_error: None,
                    resubmit_of: None,
                    notice: None,
                },
            })
            .unwrap()
            .rows_changed
        };
        assert_eq!(fire(2000, "e1", "n1"), 2);
        assert_eq!(fire(2000, "e2", "n2"), 0, "same slot, other node");
        assert_eq!(fire(4000, "e3", "n1"), 2);
        assert_eq!(s.last_firing("pull").unwrap(), Some(4000));
        assert_eq!(s.firings("pull", 10).unwrap().len(), 2);
        assert_eq!(s.events(&EventFilter::default()).unwrap().len(), 2);
        // A partner in use cannot be removed.
        let err = s
            .apply(&Command::RemovePartner {
                name: "acme".into(),
            })
            .unwrap_err();
        assert!(err.to_string().contains("route csv-to-acme"), "{err}");
        assert!(err.to_string().contains("schedule pull"), "{err}");
        // A route naming an unknown partner is refused.
        let err = s
            .apply(&Command::AddRoute(Route {
                name: "r2".into(),
                account: "alice".into(),
                pattern: "*".into(),
                actions: vec![Action::Push {
                    partner: "nobody".into(),
                    remote_dir: None,
                }],
                max_attempts: 1,
                retry_base_ms: 1,
                created_at: 1,
            }))
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    }
}

fn keyed(key: &str, at: i64, command: Command) -> Command {
    Command::Keyed {
        key: key.into(),
        at,
        command: Box::new(command),
    }
}

#[test]
fn a_keyed_change_is_applied_once_and_its_answer_given_again() {
    let s = Store::open_in_memory().unwrap();
    let first = s
        .apply(&keyed(
            "k1#1",
            1_000,
            Command::CreateAccount(account("ann")),
        ))
        .unwrap();
    assert_eq!(first.rows_changed, 1);
    // The retry gets the first answer, not "already exists", and changes
    // nothing (the account made meanwhile is not touched).
    s.apply(&Command::SetAccountEnabled {
        name: "ann".into(),
        enabled: false,
    })
    .unwrap();
    let again = s
        .apply(&keyed(
            "k1#1",
            2_000,
            Command::CreateAccount(account("ann")),
        ))
        .unwrap();
    assert_eq!(again, first);
    assert!(!s.account("ann").unwrap().unwrap().enabled);
    // An error is kept with its key too, and given again.
    let refused = s
        .apply(&keyed(
            "k2#1",
            3_000,
            Command::CreateAccount(account("ann")),
        ))
        .unwrap_err();
    assert!(matches!(refused, StoreError::AlreadyExists(_)), "{refused}");
    s.apply(&Command::RemoveAccount { name: "ann".into() })
        .unwrap();
    let replayed = s
        .apply(&keyed(
            "k2#1",
            4_000,
            Command::CreateAccount(account("ann")),
        ))
        .unwrap_err();
    assert!(
        matches!(replayed, StoreError::AlreadyExists(_)),
        "{replayed}"
    );
    assert!(s.account("ann").unwrap().is_none());
    // A key is for one kind of change.
    let other = s
        .apply(&keyed(
            "k1#1",
            5_000,
            Command::RemoveAccount { name: "bob".into() },
        ))
        .unwrap_err();
    assert!(matches!(other, StoreError::Conflict(_)), "{other}");
    // Keys are forgotten after a day (by the commands' own clock).
    let later = 1_000 + ferry_core::IDEMPOTENCY_KEY_TTL_MS + 1;
    let fresh = s
        .apply(&keyed(
            "k1#1",
            later,
            Command::CreateAccount(account("ann")),
        ))
        .unwrap();
    assert_eq!(fresh.rows_changed, 1);
}

#[test]
fn a_restore_brings_the_contents_and_the_given_local_values_together() {
    let dir = tempfile::tempdir().unwrap();
    let leader = Store::open(&dir.path().join("leader.db")).unwrap();
    leader
        .apply(&Command::CreateAccount(account("alice")))
        .unwrap();
    leader.set_local("raft.applied", "leader's").unwrap();
    leader.set_local("pending", "leader's").unwrap();
    let copy = dir.path().join("copy.db");
    leader.snapshot_to(&copy).unwrap();

    let here = Store::open(&dir.path().join("here.db")).unwrap();
    here.set_local("raft.applied", "old").unwrap();
    here.set_local("pending", "mine").unwrap();
    here.set_local("other", "mine").unwrap();
    here.restore_setting_locals(&copy, &[("raft.applied", "new")])
        .unwrap();
    assert!(
        here.account("alice").unwrap().is_some(),
        "the contents came"
    );
    assert_eq!(here.local("raft.applied").unwrap().as_deref(), Some("new"));
    assert_eq!(here.local("pending").unwrap().as_deref(), Some("mine"));
    assert_eq!(here.local("other").unwrap().as_deref(), Some("mine"));
    // The copy carries them too: the restore was one transaction.
    let restored_from = Store::open(&copy).unwrap();
    assert_eq!(
        restored_from.local("raft.applied").unwrap().as_deref(),
        Some("new")
    );
}

#[test]
fn a_snapshot_of_an_older_schema_is_migrated_and_a_newer_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let leader = Store::open(&dir.path().join("leader.db")).unwrap();
    leader
        .apply(&Command::CreateAccount(account("alice")))
        .unwrap();
    let older = dir.path().join("older.db");
    leader.snapshot_to(&older).unwrap();
    {
        // The copy as the release before the last migration made it.
        let c = Connection::open(&older).unwrap();
        c.execute_batch(
            "DROP TABLE retention_policies; DROP TABLE retention_horizons;
             DROP INDEX transfers_by_end; DROP INDEX events_by_update;
             DROP INDEX events_by_resubmit; DROP INDEX event_attempts_by_end;
             PRAGMA user_version = 19;",
        )
        .unwrap();
    }
    let here = Store::open(&dir.path().join("here.db")).unwrap();
    here.restore_from(&older).unwrap();
    assert!(here.account("alice").unwrap().is_some());
    assert_eq!(here.schema_version().unwrap(), migrations::LATEST);
    assert!(
        here.retention_policies().unwrap().is_empty(),
        "the table is back"
    );

    let newer = dir.path().join("newer.db");
    leader.snapshot_to(&newer).unwrap();
    Connection::open(&newer)
        .unwrap()
        .pragma_update(None, "user_version", migrations::LATEST + 1)
        .unwrap();
    let other = Store::open(&dir.path().join("other.db")).unwrap();
    let refused = other.restore_from(&newer).unwrap_err();
    assert!(matches!(refused, StoreError::TooNew { .. }), "{refused}");
    assert!(
        other.account("alice").unwrap().is_none(),
        "nothing restored"
    );
}

mod retention {
    use super::*;
    use ferry_core::retention::RetentionKind;
    use ferry_core::{AfterPull, AttemptResult, Event, EventStatus, Partner, Route};

    fn setup() -> Store {
        let s = Store::open_in_memory().unwrap();
        s.apply(&Command::CreateAccount(account("alice"))).unwrap();
        s.apply(&Command::AddPartner(Partner {
            name: "acme".into(),
            host: "127.0.0.1".into(),
            port: 22,
            username: "u".into(),
            password_sealed: Some("sealed".into()),
            private_key_sealed: None,
            host_key: "ssh-ed25519 AAAA".into(),
            remote_dir: "/in".into(),
            after_pull: AfterPull::Keep,
            rate_limit: None,
            created_at: 1,
        }))
        .unwrap();
        s.apply(&Command::AddRoute(Route {
            name: "csv".into(),
            account: "alice".into(),
            pattern: "*.csv".into(),
            actions: vec!["push:acme".parse().unwrap()],
            max_attempts: 5,
            retry_base_ms: 100,
            created_at: 1,
        }))
        .unwrap();
        s
    }

    fn upload(s: &Store, id: &str, path: &str, at: i64) -> Option<String> {
        let mut t = transfer(id, "alice", at);
        t.path = path.into();
        s.apply(&Command::RecordTransfer(t)).unwrap();
        s.events_of_transfer(id)
            .unwrap()
            .first()
            .map(|e| e.id.clone())
    }

    fn attempt(s: &Store, id: &str, at: i64, result: AttemptResult) {
        let claimed = s
            .apply(&Command::ClaimEvent {
                id: id.into(),
                node: "n1".into(),
                now: at,
                lease_until: at + 100,
            })
            .unwrap();
        assert_eq!(claimed.rows_changed, 1);
        let attempt = s.event(id).unwrap().unwrap().attempts;
        s.apply(&Command::FinishAttempt {
            id: id.into(),
            node: "n1".into(),
            attempt,
            now: at + 5,
            result,
        })
        .unwrap();
    }

    fn purge(s: &Store, kind: RetentionKind, before: i64, limit: u32) -> usize {
        s.apply(&Command::PurgeHistory {
            kind,
            before,
            limit,
        })
        .unwrap()
        .rows_changed
    }

    fn transfer_ids(s: &Store) -> Vec<String> {
        let mut ids: Vec<String> = s
            .list_transfers(&TransferFilter::default())
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        ids.sort();
        ids
    }

    /// An event retrying (pending after a failed attempt), its transfer
    /// row, a row of its work and its attempt stay; the rest past the
    /// cutoff goes, in batches, oldest first.
    fn with_history() -> (Store, String, String) {
        let s = setup();
        // Retrying: its push failed once and waits for the next try.
        let retrying = upload(&s, "t1", "/a.csv", 10).unwrap();
        attempt(
            &s,
            &retrying,
            20,
            AttemptResult::Retry {
                next_at: 10_000,
                error: "partner down".into(),
            },
        );
        // Nothing routed.
        upload(&s, "t2", "/b.txt", 10);
        // Delivered.
        let done = upload(&s, "t3", "/c.csv", 10).unwrap();
        attempt(&s, &done, 30, AttemptResult::Done);
        // The failed push of the retrying event: a row of its work.
        let mut push = transfer("t4", "alice", 21);
        push.event_id = Some(retrying.clone());
        push.status = TransferStatus::Failed;
        s.apply(&Command::RecordTransfer(push)).unwrap();
        (s, retrying, done)
    }

    #[test]
    fn rows_an_unfinished_event_needs_are_kept_and_the_rest_goes_in_batches() {
        let (s, retrying, done) = with_history();
        assert_eq!(
            s.event(&retrying).unwrap().unwrap().status,
            EventStatus::Pending
        );

        // The dry run lists what the purge deletes, oldest first.
        let would = s
            .purge_candidates(RetentionKind::Transfers, 1_000, 10)
            .unwrap();
        assert_eq!(would.count, 2);
        assert_eq!(would.ids, ["t2", "t3"]);
        assert_eq!(transfer_ids(&s).len(), 4, "a dry run deletes nothing");

        // Nothing is older than the cutoff yet.
        assert_eq!(purge(&s, RetentionKind::Transfers, 5, 100), 0);
        // A batch of one, then the rest.
        assert_eq!(purge(&s, RetentionKind::Transfers, 1_000, 1), 1);
        assert_eq!(transfer_ids(&s), ["t1", "t3", "t4"]);
        assert_eq!(purge(&s, RetentionKind::Transfers, 1_000, 100), 1);
        assert_eq!(transfer_ids(&s), ["t1", "t4"]);
        assert_eq!(purge(&s, RetentionKind::Transfers, 1_000, 100), 0);

        // Attempts of the retrying event stay; the done event's go.
        assert_eq!(
            s.purge_candidates(RetentionKind::Attempts, 1_000, 10)
                .unwrap()
                .ids,
            [format!("{done}#1")]
        );
        assert_eq!(purge(&s, RetentionKind::Attempts, 1_000, 100), 1);
        assert!(s.event_attempts(&done).unwrap().is_empty());
        assert_eq!(s.event_attempts(&retrying).unwrap().len(), 1);

        // Events: the done one goes, the retrying one stays.
        assert_eq!(purge(&s, RetentionKind::Events, 1_000, 100), 1);
        assert!(s.event(&done).unwrap().is_none());
        assert!(s.event(&retrying).unwrap().is_some());

        // Once it is done, nothing keeps it or its rows.
        attempt(&s, &retrying, 10_000, AttemptResult::Done);
        assert_eq!(purge(&s, RetentionKind::Transfers, 20_000, 100), 2);
        assert_eq!(purge(&s, RetentionKind::Events, 20_000, 100), 1);
        assert!(s.event_attempts(&retrying).unwrap().is_empty());
        assert!(transfer_ids(&s).is_empty());
    }

    #[test]
    fn an_event_with_attempts_goes_with_them_and_a_pending_resubmit_keeps_its_original() {
        let (s, _, done) = with_history();
        let mut again: Event = s.event(&done).unwrap().unwrap();
        again.id = "resubmit-1".into();
        again.status = EventStatus::Pending;
        again.attempts = 0;
        again.resubmit_of = Some(done.clone());
        s.apply(&Command::EnqueueEvent(again)).unwrap();
        assert_eq!(purge(&s, RetentionKind::Events, 1_000, 100), 0);
        assert!(s.event(&done).unwrap().is_some());
    }

    #[test]
    fn a_merge_does_not_bring_back_what_a_purge_deleted() {
        let (active, retrying, done) = with_history();
        let standby = Store::open_in_memory().unwrap();
        let all = |s: &Store| s.export_history(0, 10_000).unwrap().tables;
        standby.merge_history(&all(&active)).unwrap();

        assert_eq!(purge(&active, RetentionKind::Transfers, 1_000, 100), 2);
        assert_eq!(purge(&active, RetentionKind::Events, 1_000, 100), 1);
        // A puller that starts again from 0 (the active server restarted)
        // gets the standby's whole history: the deleted rows stay deleted,
        // the rows kept are merged as usual.
        let counts = active.merge_history(&all(&standby)).unwrap();
        assert_eq!(counts.total(), 0, "{counts:?}");
        assert_eq!(transfer_ids(&active), ["t1", "t4"]);
        assert!(active.event(&done).unwrap().is_none());
        assert!(active.event_attempts(&done).unwrap().is_empty());
        assert_eq!(active.event_attempts(&retrying).unwrap().len(), 1);

        // A row newer than the horizon comes as ever, and so does an old
        // one an unfinished event needs.
        let mut late = transfer("t9", "alice", 2_000);
        late.path = "/z.txt".into();
        standby.apply(&Command::RecordTransfer(late)).unwrap();
        let mut old = transfer("t8", "alice", 5);
        old.event_id = Some(retrying.clone());
        standby.apply(&Command::RecordTransfer(old)).unwrap();
        let counts = active.merge_history(&all(&standby)).unwrap();
        assert_eq!(counts.transfers, 2, "{counts:?}");
        assert_eq!(transfer_ids(&active), ["t1", "t4", "t8", "t9"]);
    }

    #[test]
    fn the_report_counts_per_group_and_period() {
        let s = setup();
        let hour = 3_600_000;
        let mut rows = vec![
            transfer("a1", "alice", 10),
            transfer("a2", "alice", 20),
            transfer("b1", "bob", 30),
            transfer("a3", "alice", hour + 5),
        ];
        rows[1].status = TransferStatus::Failed;
        rows[1].bytes = 3;
        rows[3].partner = Some("acme".into());
        for t in rows {
            s.apply(&Command::RecordTransfer(t)).unwrap();
        }
        let by_account = s
            .transfer_report(ReportBy::Account, hour, 0, 10 * hour)
            .unwrap();
        let line = |p: i64, g: &str, n: u64, ok: u64, bad: u64, bytes: u64| ReportLine {
            period: p,
            group: g.into(),
            transfers: n,
            completed: ok,
            failures: bad,
            bytes,
        };
        assert_eq!(
            by_account,
            [
                line(0, "alice", 2, 1, 1, 13),
                line(0, "bob", 1, 1, 0, 10),
                line(hour, "alice", 1, 1, 0, 10),
            ]
        );
        let by_partner = s
            .transfer_report(ReportBy::Partner, 24 * hour, 15, 10 * hour)
            .unwrap();
        assert_eq!(
            by_partner,
            [line(0, "", 2, 1, 1, 13), line(0, "acme", 1, 1, 0, 10)]
        );

        // By route: the transfers a route's event made.
        let event = upload(&s, "c1", "/x.csv", 40).unwrap();
        let mut push = transfer("p1", "alice", 50);
        push.event_id = Some(event);
        push.partner = Some("acme".into());
        push.bytes = 7;
        s.apply(&Command::RecordTransfer(push)).unwrap();
        let by_route = s.transfer_report(ReportBy::Route, hour, 0, hour).unwrap();
        assert_eq!(
            by_route,
            [line(0, "", 4, 3, 1, 33), line(0, "csv", 1, 1, 0, 7)]
        );
    }
}
