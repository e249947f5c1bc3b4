//! Every admin endpoint. Each is a request type: its path parameters are
//! `String` fields, and `body` or `query` hold what it sends.

use crate::types::*;
use crate::{fill, Endpoint, Method, NoBody, NoContent, NoQuery};

/// Declares an endpoint's request type and its [`Endpoint`] impl:
/// `"summary" Name Method "path" [params] body(T) | query(T) => STATUS Answer`,
/// where an answer `[T]` is a list of `T` (`Vec<T>`).
macro_rules! endpoint {
    (@or $t:ty ; $default:ty) => { $t };
    (@or ; $default:ty) => { $default };
    (@has $t:ty) => { true };
    (@has) => { false };
    (
        $summary:literal
        $name:ident $method:ident $path:literal [$($param:ident),*]
        $(body($body:ty))? $(query($query:ty))? => $status:literal [$item:ty]
    ) => {
        endpoint! {
            $summary $name $method $path [$($param),*]
            $(body($body))? $(query($query))? => $status Vec<$item>
            {
                fn answer_schema(
                    components: &mut crate::openapi::Components,
                ) -> crate::openapi::SchemaRef {
                    crate::openapi::list_of::<$item>(components)
                }
            }
        }
    };
    (
        $summary:literal
        $name:ident $method:ident $path:literal [$($param:ident),*]
        $(body($body:ty))? $(query($query:ty))? => $status:literal $answer:ty
        $({ $($extra:item)* })?
    ) => {
        #[doc = concat!("`", stringify!($method), " ", $path, "`: ", $summary)]
        #[derive(Debug, Clone)]
        pub struct $name {
            $(
                #[doc = concat!("The `", stringify!($param), "` of the path.")]
                pub $param: String,
            )*
            $(
                /// The request's body.
                pub body: $body,
            )?
            $(
                /// The request's query.
                pub query: $query,
            )?
        }

        impl Endpoint for $name {
            const METHOD: Method = Method::$method;
            const PATH: &'static str = $path;
            const STATUS: u16 = $status;
            const SUMMARY: &'static str = $summary;
            const HAS_BODY: bool = endpoint!(@has $($body)?);
            type Body = endpoint!(@or $($body)? ; NoBody);
            type Query = endpoint!(@or $($query)? ; NoQuery);
            type Answer = $answer;

            fn path(&self) -> String {
                fill(Self::PATH, &[$(self.$param.as_str()),*])
            }
            $(
                fn body(&self) -> Option<&$body> {
                    Some(&self.body)
                }
            )?
            $(
                fn query(&self) -> Option<&$query> {
                    Some(&self.query)
                }
            )?
            $($($extra)*)?
        }
    };
}

// ---- accounts ----

endpoint! {
    "List accounts."
    ListAccounts Get "/api/v1/accounts" [] => 200 [Account]
}
endpoint! {
    "Create an account."
    CreateAccount Post "/api/v1/accounts" [] body(NewAccount) => 201 Account
}
endpoint! {
    "Show an account."
    ShowAccount Get "/api/v1/accounts/{name}" [name] => 200 Account
}
endpoint! {
    "Change an account's password, expiry or allowed client networks."
    UpdateAccount Post "/api/v1/accounts/{name}" [name] body(AccountChanges) => 200 Account
}
endpoint! {
    "Remove an account and its keys (its files stay); refused while routes, schedules or monitors use it, unless `with_uses`."
    RemoveAccount Delete "/api/v1/accounts/{name}" [name] query(RemoveAccountQuery) => 204 NoContent
}
endpoint! {
    "Allow an account to log in again."
    EnableAccount Post "/api/v1/accounts/{name}/enable" [name] => 204 NoContent
}
endpoint! {
    "Stop an account from logging in."
    DisableAccount Post "/api/v1/accounts/{name}/disable" [name] => 204 NoContent
}
endpoint! {
    "List an account's public keys."
    ListKeys Get "/api/v1/accounts/{name}/keys" [name] => 200 [AccountKey]
}
endpoint! {
    "Authorise a public key for an account."
    AddKey Post "/api/v1/accounts/{name}/keys" [name] body(NewKey) => 201 AccountKey
}
endpoint! {
    "Revoke one public key of an account (`fingerprint`), or every key (`all=true`)."
    RemoveKeys Delete "/api/v1/accounts/{name}/keys" [name] query(KeyQuery) => 204 NoContent
}
endpoint! {
    "List an account's API tokens (never the tokens)."
    ListTokens Get "/api/v1/accounts/{name}/tokens" [name] => 200 [Token]
}
endpoint! {
    "Create an API token; the answer is the only time it is shown."
    AddToken Post "/api/v1/accounts/{name}/tokens" [name] body(NewToken) => 201 Token
}
endpoint! {
    "Revoke an API token."
    RemoveToken Delete "/api/v1/accounts/{name}/tokens/{id}" [name, id] => 204 NoContent
}

endpoint! {
    "List what an account may do in each folder of its home (no rule: everything)."
    ListFolderRules Get "/api/v1/accounts/{name}/permissions" [name] => 200 [FolderRule]
}
endpoint! {
    "Set what an account may do in a folder of its home and the folders below it."
    SetFolderRule Post "/api/v1/accounts/{name}/permissions" [name] body(NewFolderRule) => 200 FolderRule
}
endpoint! {
    "Remove a folder's rule: the folder inherits its parent's."
    RemoveFolderRule Delete "/api/v1/accounts/{name}/permissions" [name] query(FolderQuery) => 204 NoContent
}

// ---- virtual folders ----

endpoint! {
    "List the virtual folders, each with the homes it is mounted into."
    ListVirtualFolders Get "/api/v1/folders" [] => 200 [VirtualFolder]
}
endpoint! {
    "Create a virtual folder: a directory of the repository that homes can mount."
    CreateVirtualFolder Post "/api/v1/folders" [] body(NewVirtualFolder) => 201 VirtualFolder
}
endpoint! {
    "Remove a virtual folder no home mounts (its files stay in the repository)."
    RemoveVirtualFolder Delete "/api/v1/folders/{name}" [name] => 204 NoContent
}
endpoint! {
    "List the virtual folders mounted into an account's home."
    ListMounts Get "/api/v1/accounts/{name}/mounts" [name] => 200 [Mount]
}
endpoint! {
    "Mount a virtual folder into an account's home at a path, with what the account may do in it."
    MountFolder Post "/api/v1/accounts/{name}/mounts" [name] body(NewMount) => 200 Mount
}
endpoint! {
    "Remove a mount from an account's home (the folder and its files stay)."
    UnmountFolder Delete "/api/v1/accounts/{name}/mounts" [name] query(FolderQuery) => 204 NoContent
}

// ---- client networks ----

endpoint! {
    "Show the networks no client may log in from."
    GetDenyList Get "/api/v1/network/deny" [] => 200 Networks
}
endpoint! {
    "Replace the networks no client may log in from (empty: none)."
    SetDenyList Post "/api/v1/network/deny" [] body(Networks) => 200 Networks
}

endpoint! {
    "Show the password policy's settable part (the shortest password accepted)."
    GetPasswordPolicy Get "/api/v1/settings/password-policy" [] => 200 PasswordPolicy
}
endpoint! {
    "Set the shortest account password accepted (8 to 128); passwords set before stay."
    SetPasswordPolicy Post "/api/v1/settings/password-policy" [] body(PasswordPolicy) => 200 PasswordPolicy
}
endpoint! {
    "Show the idle limit: accounts unused for more than that many days cannot log in."
    GetIdleLimit Get "/api/v1/settings/idle-limit" [] => 200 IdleLimit
}
endpoint! {
    "Set the idle limit (0: off). Accounts are held idle only for the time after it was set."
    SetIdleLimit Post "/api/v1/settings/idle-limit" [] body(IdleLimit) => 200 IdleLimit
}

endpoint! {
    "List the client addresses banned now (by the defender or an admin)."
    ListBans Get "/api/v1/bans" [] => 200 [Ban]
}
endpoint! {
    "Ban a client address on every server."
    AddBan Post "/api/v1/bans" [] body(NewBan) => 201 Ban
}
endpoint! {
    "Lift the ban of a client address."
    RemoveBan Delete "/api/v1/bans/{address}" [address] => 204 NoContent
}

// ---- admins and the audit trail ----

endpoint! {
    "Who the caller is: the admin's name (or `bootstrap`) and role."
    WhoAmI Get "/api/v1/whoami" [] => 200 Identity
}
endpoint! {
    "List the named admins."
    ListAdmins Get "/api/v1/admins" [] => 200 [AdminView]
}
endpoint! {
    "Create a named admin with a role (admin, operator, auditor)."
    CreateAdmin Post "/api/v1/admins" [] body(NewAdmin) => 201 AdminView
}
endpoint! {
    "Remove an admin and its API tokens."
    RemoveAdmin Delete "/api/v1/admins/{name}" [name] => 204 NoContent
}
endpoint! {
    "List an admin's API tokens (never the tokens)."
    ListAdminTokens Get "/api/v1/admins/{name}/tokens" [name] => 200 [Token]
}
endpoint! {
    "Create an admin API token; the answer is the only time it is shown."
    AddAdminToken Post "/api/v1/admins/{name}/tokens" [name] body(NewAdminToken) => 201 Token
}
endpoint! {
    "Revoke an admin API token."
    RemoveAdminToken Delete "/api/v1/admins/{name}/tokens/{id}" [name, id] => 204 NoContent
}
endpoint! {
    "Open a console session with a named admin's password (HTTP Basic); sets the session cookie."
    OpenConsoleSession Post "/api/v1/console/session" [] => 201 ConsoleSession
}
endpoint! {
    "The console session of the request's cookie, with its CSRF token."
    ShowConsoleSession Get "/api/v1/console/session" [] => 200 ConsoleSession
}
endpoint! {
    "End the console session of the request's cookie."
    EndConsoleSession Delete "/api/v1/console/session" [] => 204 NoContent
}
endpoint! {
    "The audit trail: every change made or refused through the admin API, newest first."
    ListAudit Get "/api/v1/audit" [] query(AuditQuery) => 200 [AuditEntry]
}

// ---- transfers ----

endpoint! {
    "List transfer-log rows, newest first."
    ListTransfers Get "/api/v1/transfers" [] query(TransferQuery) => 200 [Transfer]
}
endpoint! {
    "Show a transfer with the events it caused and every attempt."
    ShowTransfer Get "/api/v1/transfers/{id}" [id] => 200 TransferDetail
}

// ---- partners ----

endpoint! {
    "List partners (never their credentials)."
    ListPartners Get "/api/v1/partners" [] => 200 [Partner]
}
endpoint! {
    "Add a partner SFTP server."
    AddPartner Post "/api/v1/partners" [] body(NewPartner) => 201 Partner
}
endpoint! {
    "Remove a partner (refused while a route or schedule uses it)."
    RemovePartner Delete "/api/v1/partners/{name}" [name] => 204 NoContent
}
endpoint! {
    "Connect to a partner, checking its host key, and list its remote directory."
    TestPartner Post "/api/v1/partners/{name}/test" [name] => 200 PartnerTest
}

// ---- routes ----

endpoint! {
    "List routes."
    ListRoutes Get "/api/v1/routes" [] => 200 [Route]
}
endpoint! {
    "Add a route."
    AddRoute Post "/api/v1/routes" [] body(NewRoute) => 201 Route
}
endpoint! {
    "Remove a route."
    RemoveRoute Delete "/api/v1/routes/{name}" [name] => 204 NoContent
}

// ---- schedules ----

endpoint! {
    "List schedules."
    ListSchedules Get "/api/v1/schedules" [] => 200 [Schedule]
}
endpoint! {
    "Add a schedule."
    AddSchedule Post "/api/v1/schedules" [] body(NewSchedule) => 201 Schedule
}
endpoint! {
    "Remove a schedule."
    RemoveSchedule Delete "/api/v1/schedules/{name}" [name] => 204 NoContent
}
endpoint! {
    "A schedule's firings, newest first."
    ListFirings Get "/api/v1/schedules/{name}/firings" [name] => 200 [Firing]
}

// ---- monitors ----

endpoint! {
    "List folder monitors."
    ListMonitors Get "/api/v1/monitors" [] => 200 [Monitor]
}
endpoint! {
    "Add a folder monitor."
    AddMonitor Post "/api/v1/monitors" [] body(NewMonitor) => 201 Monitor
}
endpoint! {
    "Remove a folder monitor."
    RemoveMonitor Delete "/api/v1/monitors/{name}" [name] => 204 NoContent
}

// ---- events ----

endpoint! {
    "List events, newest first."
    ListEvents Get "/api/v1/events" [] query(ListQuery) => 200 [Event]
}
endpoint! {
    "Show an event with every attempt."
    ShowEvent Get "/api/v1/events/{id}" [id] => 200 EventDetail
}
endpoint! {
    "Queue a done or failed event again, as a new event."
    ResubmitEvent Post "/api/v1/events/{id}/resubmit" [id] => 201 Event
}

// ---- notifications ----

endpoint! {
    "List notification endpoints (never their secrets)."
    ListNotifyEndpoints Get "/api/v1/notifications/endpoints" [] => 200 [NotifyEndpoint]
}
endpoint! {
    "Add a notification endpoint: a webhook or an SMTP server and recipients."
    AddNotifyEndpoint Post "/api/v1/notifications/endpoints" [] body(NewNotifyEndpoint) => 201 NotifyEndpoint
}
endpoint! {
    "Remove a notification endpoint (refused while a rule uses it)."
    RemoveNotifyEndpoint Delete "/api/v1/notifications/endpoints/{name}" [name] => 204 NoContent
}
endpoint! {
    "Queue a test notification to an endpoint; follow it with the event it returns."
    TestNotifyEndpoint Post "/api/v1/notifications/endpoints/{name}/test" [name] => 202 NotifyTest
}
endpoint! {
    "List notification rules."
    ListNotifyRules Get "/api/v1/notifications/rules" [] => 200 [NotifyRule]
}
endpoint! {
    "Add a notification rule."
    AddNotifyRule Post "/api/v1/notifications/rules" [] body(NewNotifyRule) => 201 NotifyRule
}
endpoint! {
    "Remove a notification rule."
    RemoveNotifyRule Delete "/api/v1/notifications/rules/{name}" [name] => 204 NoContent
}

// ---- cluster ----

endpoint! {
    "Every server's role, epoch, health and what is out of date."
    GetClusterStatus Get "/api/v1/cluster/status" [] => 200 ClusterStatus
}
endpoint! {
    "The cluster's history, every member's events merged, newest last."
    ListClusterEvents Get "/api/v1/cluster/events" [] query(ClusterEventsQuery) => 200 [ClusterEvent]
}
endpoint! {
    "Active/passive: make the server asked the active server."
    PromoteServer Post "/api/v1/cluster/promote" [] body(Promote) => 200 Message
}
endpoint! {
    "Active/active: make this server and its configured peers the Raft group."
    InitCluster Post "/api/v1/cluster/init" [] => 200 Message
}
endpoint! {
    "Active/active: add the server asked to a member's group."
    JoinCluster Post "/api/v1/cluster/join" [] body(Join) => 200 Message
}
endpoint! {
    "Active/active: remove the server asked from its group."
    LeaveCluster Post "/api/v1/cluster/leave" [] => 200 Message
}
endpoint! {
    "Active/active: remove another member from the group."
    RemoveClusterMember Post "/api/v1/cluster/remove" [] body(RemoveMember) => 200 Message
}
endpoint! {
    "Raise the cluster's feature level as far as every member's release can run (after a rolling upgrade); refused while a member of an older release is left or does not answer."
    FinalizeUpgrade Post "/api/v1/cluster/finalize-upgrade" [] => 200 Message
}
endpoint! {
    "Stop this server gracefully, as SIGTERM does: it takes nothing new (edges send new sessions elsewhere), transfers in flight get the drain deadline, leases are given back, then the process ends."
    DrainServer Post "/api/v1/server/drain" [] => 202 Message
}

// ---- retention and reports ----

endpoint! {
    "List the retention policies."
    ListRetentionPolicies Get "/api/v1/retention/policies" [] => 200 [RetentionPolicy]
}
endpoint! {
    "Set a retention policy (replacing the one of that name)."
    SetRetentionPolicy Post "/api/v1/retention/policies" [] body(NewRetentionPolicy) => 200 RetentionPolicy
}
endpoint! {
    "Remove a retention policy."
    RemoveRetentionPolicy Delete "/api/v1/retention/policies/{name}" [name] => 204 NoContent
}
endpoint! {
    "Run the retention policies now, or list what they would remove (`dry_run`)."
    RunRetention Post "/api/v1/retention/run" [] body(RetentionRun) => 200 RetentionReport
}
endpoint! {
    "Transfers per period and account, partner or route: counts, failures, bytes."
    ReportTransfers Get "/api/v1/reports/transfers" [] query(ReportQuery) => 200 TransferReport
}

/// `POST /api/v1/sync`: copy the tables and files of `sync/*.conf` from the
/// active server to standbys; the answer streams [`SyncLine`]s.
#[derive(Debug, Clone)]
pub struct RunSync {
    /// The request's body.
    pub body: Sync,
}

impl Endpoint for RunSync {
    const METHOD: Method = Method::Post;
    const PATH: &'static str = "/api/v1/sync";
    const STATUS: u16 = 200;
    const SUMMARY: &'static str =
        "Active/passive: copy the synced tables and files to standbys (JSON lines).";
    const CONTENT_TYPE: &'static str = "application/x-ndjson";
    const HAS_BODY: bool = true;
    type Body = Sync;
    type Query = NoQuery;
    type Answer = SyncLine;

    fn path(&self) -> String {
        Self::PATH.to_owned()
    }
    fn body(&self) -> Option<&Sync> {
        Some(&self.body)
    }
}

// ---- without the token ----

/// Declares an endpoint that needs no token and takes nothing.
macro_rules! public_endpoint {
    ($summary:literal $name:ident $path:literal => $content_type:literal $answer:ty) => {
        #[doc = concat!("`GET ", $path, "` (no token): ", $summary)]
        #[derive(Debug, Clone, Default)]
        pub struct $name {}

        impl Endpoint for $name {
            const METHOD: Method = Method::Get;
            const PATH: &'static str = $path;
            const STATUS: u16 = 200;
            const SUMMARY: &'static str = $summary;
            const CONTENT_TYPE: &'static str = $content_type;
            const AUTH: bool = false;
            const HAS_BODY: bool = false;
            type Body = NoBody;
            type Query = NoQuery;
            type Answer = $answer;

            fn path(&self) -> String {
                Self::PATH.to_owned()
            }

            fn answer_schema(
                components: &mut crate::openapi::Components,
            ) -> crate::openapi::SchemaRef {
                crate::openapi::inline::<$answer>(components)
            }
        }
    };
}

public_endpoint! {
    "The process is up (`ok`)."
    Healthz "/healthz" => "text/plain" String
}
public_endpoint! {
    "Prometheus metrics, as OpenMetrics text: sessions, logins, transfers, the event queue, events by route and partner, notifications, the cluster role and Raft log, store writes, defender bans."
    GetMetrics "/metrics" => "application/openmetrics-text; version=1.0.0" String
}
public_endpoint! {
    "200 while this server serves sessions and takes writes, 503 with the reason otherwise."
    Readyz "/readyz" => "text/plain" String
}
public_endpoint! {
    "This server's role in its cluster."
    GetRole "/role" => "application/json" Role
}
public_endpoint! {
    "This document: the admin API in OpenAPI 3.1."
    GetOpenApi "/api/v1/openapi.json" => "application/json" serde_json::Value
}
