//! Text or JSON lines, switched while the app runs (a reload of `log.format`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Sends every callback to the text layer or, while `json` is set, to the JSON one. Only the
/// active layer formats a span's fields, so a switch costs nothing per request; a span
/// opened before a switch to JSON gets its fields as `{}` in the JSON lines (the JSON
/// formatter requires them), and one opened before a switch to text shows none.
pub(crate) struct Switch<T, J> {
    pub(crate) text: T,
    pub(crate) json: J,
    pub(crate) use_json: Arc<AtomicBool>,
}

impl<T, J> Switch<T, J> {
    fn json(&self) -> bool {
        self.use_json.load(Ordering::Relaxed)
    }
}

impl<S, T, J> Layer<S> for Switch<T, J>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    T: Layer<S>,
    J: Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.text.on_register_dispatch(subscriber);
        self.json.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.text.on_layer(subscriber);
        self.json.on_layer(subscriber);
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if self.json() {
            self.json.on_new_span(attrs, id, ctx);
        } else {
            self.text.on_new_span(attrs, id, ctx);
        }
    }

    fn on_record(&self, span: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if self.json() {
            self.json.on_record(span, values, ctx);
        } else {
            self.text.on_record(span, values, ctx);
        }
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        if self.json() {
            self.json.on_follows_from(span, follows, ctx);
        } else {
            self.text.on_follows_from(span, follows, ctx);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if self.json() {
            give_json_fields(event, &ctx);
            self.json.on_event(event, ctx);
        } else {
            self.text.on_event(event, ctx);
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if self.json() {
            self.json.on_enter(id, ctx);
        } else {
            self.text.on_enter(id, ctx);
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if self.json() {
            self.json.on_exit(id, ctx);
        } else {
            self.text.on_exit(id, ctx);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if self.json() {
            self.json.on_close(id, ctx);
        } else {
            self.text.on_close(id, ctx);
        }
    }
}

/// Spans in the event's scope opened while text was on have no JSON fields, which the JSON
/// formatter requires: they get an empty object.
fn give_json_fields<S>(event: &Event<'_>, ctx: &Context<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(scope) = ctx.event_scope(event) else {
        return;
    };
    for span in scope {
        if span
            .extensions()
            .get::<FormattedFields<JsonFields>>()
            .is_some()
        {
            continue;
        }
        let mut extensions = span.extensions_mut();
        if extensions
            .get_mut::<FormattedFields<JsonFields>>()
            .is_none()
        {
            extensions.insert(FormattedFields::<JsonFields>::new("{}".to_owned()));
        }
    }
}
