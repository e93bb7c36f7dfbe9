//! A `#[truss::route]` as checked by [`parse`](super::parse) and read by
//! [`generate`](super::generate).

use proc_macro2::Span;
use syn::{Ident, ItemFn, LitStr, Type};

use crate::shared::auth::{AuthOptions, Policy};

/// The attribute's arguments: `get, "/users/{id}", timeout = "2s", ...`.
pub struct Args {
    /// The HTTP method, lower case.
    pub method: Ident,
    /// The route path, as written.
    pub path: LitStr,
    /// The options after the path.
    pub options: Options,
}

/// The per-route options; `None` where not given.
#[derive(Default)]
pub struct Options {
    /// `timeout = "2s"`, in nanoseconds.
    pub timeout: Option<u64>,
    /// `rate_limit = 100`: requests per second.
    pub rate_limit: Option<f64>,
    /// `burst = 20`.
    pub burst: Option<u32>,
    /// `breaker = false`.
    pub breaker: Option<bool>,
    /// `status = 201`.
    pub status: Option<u16>,
    /// `auth = "public"`, `scope = "users:write"`: combined into [`Route::policy`].
    pub auth: AuthOptions,
}

/// How the generated handler extracts a parameter.
#[derive(Clone, Copy)]
pub enum Role {
    /// `#[path]`: one `{name}` of the route path.
    Path,
    /// `#[query]`: the query string, validated.
    Query,
    /// `#[body]`: the JSON body, validated.
    Body,
    /// `#[state]`: the axum state.
    State,
    /// Unmarked: any axum extractor.
    Other,
}

impl Role {
    /// The parameter's place among the generated handler's extractors: state, path,
    /// query, others, body (last, as axum requires). The `#[path]` parameters share one
    /// extractor, which comes first.
    pub fn order(self) -> u8 {
        match self {
            Role::State => 0,
            Role::Path => 1,
            Role::Query => 2,
            Role::Other => 3,
            Role::Body => 4,
        }
    }
}

/// A parameter of the handler.
pub struct Param {
    /// How it is extracted.
    pub role: Role,
    /// Its name, when the pattern is a plain identifier (always, for [`Role::Path`]).
    pub name: Option<Ident>,
    /// Its type.
    pub ty: Type,
    /// The whole parameter, for errors.
    pub span: Span,
}

/// A checked route.
pub struct Route {
    /// The attribute's arguments.
    pub args: Args,
    /// The handler, kept as written except for the `#[path]`-style markers.
    pub func: ItemFn,
    /// The handler's parameters, in order.
    pub params: Vec<Param>,
    /// For each `{name}` of the path, in order: the index in `params` of its `#[path]`
    /// parameter.
    pub path_params: Vec<usize>,
    /// Who may call it, when the attribute says.
    pub policy: Option<Policy>,
}
