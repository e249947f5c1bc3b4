//! The OpenAPI 3.1 document of the admin API, built from the [`Endpoint`]
//! impls: one operation per endpoint, its path parameters from the path
//! template, its query from [`Endpoint::Query`], its body and answer from
//! their schemas, and [`ErrorBody`] for every error.

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, Schema};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr,
    Required, ResponseBuilder,
};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::endpoints::*;
use crate::{parameters, Endpoint, ErrorBody, Method};

/// Something done for each endpoint type.
pub trait Visitor {
    /// Called once per endpoint.
    fn visit<E: Endpoint>(&mut self);
}

/// Visits every endpoint of the admin API: the one list that the document
/// and the test holding the router against it share.
pub fn visit_all(v: &mut impl Visitor) {
    v.visit::<Healthz>();
    v.visit::<GetMetrics>();
    v.visit::<Readyz>();
    v.visit::<GetRole>();
    v.visit::<GetOpenApi>();
    v.visit::<ListAccounts>();
    v.visit::<CreateAccount>();
    v.visit::<ShowAccount>();
    v.visit::<UpdateAccount>();
    v.visit::<RemoveAccount>();
    v.visit::<EnableAccount>();
    v.visit::<DisableAccount>();
    v.visit::<ListKeys>();
    v.visit::<AddKey>();
    v.visit::<RemoveKeys>();
    v.visit::<ListTokens>();
    v.visit::<AddToken>();
    v.visit::<RemoveToken>();
    v.visit::<ListFolderRules>();
    v.visit::<SetFolderRule>();
    v.visit::<RemoveFolderRule>();
    v.visit::<ListVirtualFolders>();
    v.visit::<CreateVirtualFolder>();
    v.visit::<RemoveVirtualFolder>();
    v.visit::<ListMounts>();
    v.visit::<MountFolder>();
    v.visit::<UnmountFolder>();
    v.visit::<GetDenyList>();
    v.visit::<SetDenyList>();
    v.visit::<GetPasswordPolicy>();
    v.visit::<SetPasswordPolicy>();
    v.visit::<GetIdleLimit>();
    v.visit::<SetIdleLimit>();
    v.visit::<ListBans>();
    v.visit::<AddBan>();
    v.visit::<RemoveBan>();
    v.visit::<WhoAmI>();
    v.visit::<OpenConsoleSession>();
    v.visit::<ShowConsoleSession>();
    v.visit::<EndConsoleSession>();
    v.visit::<ListAdmins>();
    v.visit::<CreateAdmin>();
    v.visit::<RemoveAdmin>();
    v.visit::<ListAdminTokens>();
    v.visit::<AddAdminToken>();
    v.visit::<RemoveAdminToken>();
    v.visit::<ListAudit>();
    v.visit::<ListTransfers>();
    v.visit::<ShowTransfer>();
    v.visit::<ListPartners>();
    v.visit::<AddPartner>();
    v.visit::<RemovePartner>();
    v.visit::<TestPartner>();
    v.visit::<ListRoutes>();
    v.visit::<AddRoute>();
    v.visit::<RemoveRoute>();
    v.visit::<ListSchedules>();
    v.visit::<AddSchedule>();
    v.visit::<RemoveSchedule>();
    v.visit::<ListFirings>();
    v.visit::<ListMonitors>();
    v.visit::<AddMonitor>();
    v.visit::<RemoveMonitor>();
    v.visit::<ListEvents>();
    v.visit::<ShowEvent>();
    v.visit::<ResubmitEvent>();
    v.visit::<ListNotifyEndpoints>();
    v.visit::<AddNotifyEndpoint>();
    v.visit::<RemoveNotifyEndpoint>();
    v.visit::<TestNotifyEndpoint>();
    v.visit::<ListNotifyRules>();
    v.visit::<AddNotifyRule>();
    v.visit::<RemoveNotifyRule>();
    v.visit::<GetClusterStatus>();
    v.visit::<ListClusterEvents>();
    v.visit::<PromoteServer>();
    v.visit::<InitCluster>();
    v.visit::<JoinCluster>();
    v.visit::<LeaveCluster>();
    v.visit::<RemoveClusterMember>();
    v.visit::<FinalizeUpgrade>();
    v.visit::<DrainServer>();
    v.visit::<RunSync>();
    v.visit::<ListRetentionPolicies>();
    v.visit::<SetRetentionPolicy>();
    v.visit::<RemoveRetentionPolicy>();
    v.visit::<RunRetention>();
    v.visit::<ReportTransfers>();
}

/// The name of the bearer-token security scheme.
const TOKEN: &str = "admin_token";

/// The admin API's OpenAPI 3.1 document.
pub fn document() -> OpenApi {
    let mut doc = Builder::default();
    visit_all(&mut doc);
    doc.build()
}

/// The document as committed in `docs/admin-api.json`: pretty JSON with a
/// final newline.
pub fn document_json() -> String {
    let text = document().to_pretty_json().unwrap_or_default();
    format!("{text}\n")
}

/// (method, path template) of every endpoint.
pub fn routes() -> Vec<(Method, &'static str)> {
    struct Routes(Vec<(Method, &'static str)>);
    impl Visitor for Routes {
        fn visit<E: Endpoint>(&mut self) {
            self.0.push((E::METHOD, E::PATH));
        }
    }
    let mut routes = Routes(Vec::new());
    visit_all(&mut routes);
    routes.0
}

#[derive(Default)]
struct Builder {
    paths: Paths,
    schemas: Components,
}

impl Visitor for Builder {
    fn visit<E: Endpoint>(&mut self) {
        let mut op = OperationBuilder::new()
            .summary(Some(E::SUMMARY))
            .operation_id(Some(operation_id(E::METHOD, E::PATH)))
            .tag(tag(E::PATH));
        for name in parameters(E::PATH) {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(String::schema())),
            );
        }
        for p in E::Query::into_params(|| Some(ParameterIn::Query)) {
            op = op.parameter(p);
        }
        if E::HAS_BODY {
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(named::<E::Body>(&mut self.schemas)))
                            .build(),
                    )
                    .required(Some(Required::True))
                    .build(),
            ));
        }
        let success = ResponseBuilder::new().description(status_text(E::STATUS));
        let success = if E::STATUS == 204 {
            success
        } else {
            success.content(
                E::CONTENT_TYPE,
                ContentBuilder::new()
                    .schema(Some(E::answer_schema(&mut self.schemas)))
                    .build(),
            )
        };
        let error = ResponseBuilder::new()
            .description("An error: its code, and a message for people.")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(named::<ErrorBody>(&mut self.schemas)))
                    .build(),
            );
        op = op
            .response(E::STATUS.to_string(), success.build())
            .response("default", error.build());
        if E::AUTH {
            op = op.security(SecurityRequirement::new(TOKEN, Vec::<String>::new()));
        }
        let method = match E::METHOD {
            Method::Get => HttpMethod::Get,
            Method::Post => HttpMethod::Post,
            Method::Delete => HttpMethod::Delete,
        };
        self.paths
            .add_path_operation(E::PATH, vec![method], op.build());
    }
}

/// Named schemas of the document, collected while it is built.
pub type Components = Vec<(String, RefOr<Schema>)>;

/// A schema, or a `$ref` to one in the components.
pub type SchemaRef = RefOr<Schema>;

/// A `$ref` to `T`'s schema, which is added to the components with the
/// schemas it refers to.
pub fn named<T: ToSchema>(components: &mut Components) -> SchemaRef {
    T::schemas(components);
    components.push((T::name().into_owned(), T::schema()));
    RefOr::Ref(Ref::from_schema_name(T::name()))
}

/// An array of `$ref`s to `T`'s schema.
pub fn list_of<T: ToSchema>(components: &mut Components) -> SchemaRef {
    ArrayBuilder::new().items(named::<T>(components)).into()
}

/// `T`'s schema itself (for answers that are not a named type: text, any
/// JSON), with the schemas it refers to added to the components.
pub fn inline<T: ToSchema>(components: &mut Components) -> SchemaRef {
    T::schemas(components);
    T::schema()
}

impl Builder {
    fn build(self) -> OpenApi {
        let mut components = ComponentsBuilder::new().security_scheme(
            TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The admin token (`admin.token` of `ferry up`)."))
                    .build(),
            ),
        );
        for (name, schema) in self.schemas {
            components = components.schema(name, schema);
        }
        OpenApiBuilder::new()
            .info(
                InfoBuilder::new()
                    .title("Ferry admin API")
                    .version(env!("CARGO_PKG_VERSION"))
                    .description(Some(
                        "The admin API of a Ferry server, on its admin listener (HTTPS). \
                         Times are RFC 3339. Changes may carry an `Idempotency-Key` header: \
                         a change sent again with the same key is applied once.",
                    ))
                    .build(),
            )
            .paths(self.paths)
            .components(Some(components.build()))
            .build()
    }
}

/// `get_api_v1_accounts_name`: unique per method and path.
fn operation_id(method: Method, path: &str) -> String {
    let mut id = method.as_str().to_ascii_lowercase();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        id.push('_');
        id.extend(
            part.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .map(|c| c.to_ascii_lowercase()),
        );
    }
    id
}

/// The group of an endpoint: the first path segment after `/api/v1`.
fn tag(path: &str) -> String {
    let rest = path.strip_prefix("/api/v1/").unwrap_or("health");
    rest.split('/').next().unwrap_or(rest).to_owned()
}

fn status_text(status: u16) -> &'static str {
    match status {
        201 => "Created.",
        204 => "Done; no body.",
        _ => "OK.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/admin-api.json` is the generated document; with
    /// `FERRY_WRITE_API_DOC=1` this test writes it instead.
    #[test]
    fn committed_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/admin-api.json");
        let generated = document_json();
        if std::env::var_os("FERRY_WRITE_API_DOC").is_some() {
            std::fs::write(path, &generated).unwrap_or_else(|e| panic!("{path}: {e}"));
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/admin-api.json is not the generated document; run \
             FERRY_WRITE_API_DOC=1 cargo test -p ferry-api and commit it"
        );
    }

    #[test]
    fn every_endpoint_is_in_the_document_once() {
        let doc: serde_json::Value = serde_json::from_str(&document_json()).unwrap_or_default();
        assert_eq!(doc["openapi"], "3.1.0");
        let routes = routes();
        let mut seen = std::collections::BTreeSet::new();
        for (method, path) in &routes {
            assert!(seen.insert((method, path)), "{method:?} {path} twice");
            let op = &doc["paths"][path][method.as_str().to_ascii_lowercase()];
            assert!(op.is_object(), "{method:?} {path} not in the document");
        }
        let operations: usize = doc["paths"]
            .as_object()
            .map(|paths| {
                paths
                    .values()
                    .map(|p| p.as_object().map_or(0, |o| o.len()))
                    .sum()
            })
            .unwrap_or_default();
        assert_eq!(operations, routes.len());
    }

    #[test]
    fn operation_ids_are_unique_names() {
        assert_eq!(
            operation_id(Method::Delete, "/api/v1/accounts/{name}/tokens/{id}"),
            "delete_api_v1_accounts_name_tokens_id"
        );
        assert_eq!(tag("/api/v1/accounts/{name}"), "accounts");
        assert_eq!(tag("/healthz"), "health");
    }
}
