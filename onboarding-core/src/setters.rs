//! `with_*` setters for configuration builders.
//!
//! Every configuration type of the workspace (`WorkerConfig`, `SqlOptions`,
//! `WebhookConfig`, `AmqpConfig`, ...) is `#[non_exhaustive]` and built with
//! `with_*` methods, most of which set one field. They are written once here
//! so that each builder only spells out the setters that do more (clamp a
//! value, set two fields).

/// Defines `with_*` methods that each set one field of `Self`.
///
/// ```
/// struct Options { retries: u32 }
/// impl Options {
///     onboarding_core::setters! {
///         /// Sets how often to retry.
///         with_retries(retries: u32);
///     }
/// }
/// let options = Options { retries: 0 }.with_retries(3);
/// assert_eq!(options.retries, 3);
/// ```
#[doc(hidden)]
#[macro_export]
macro_rules! setters {
    ($( $(#[$doc:meta])* $name:ident($field:ident: $ty:ty) );* $(;)?) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $name(mut self, $field: $ty) -> Self {
                self.$field = $field;
                self
            }
        )*
    };
}
