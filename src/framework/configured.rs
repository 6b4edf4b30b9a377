//! What a provider's `ConfigureProvider` produces and its resources use: set once the provider is
//! configured, read by every resource call. It lives in the framework, below both the provider and its
//! resources, so the provider hands it to its resources without either importing the other.

use std::sync::{Arc, RwLock};

use super::Diagnostics;

/// A value the provider's configuration sets later, shared with its resources; empty until Terraform has
/// called ConfigureProvider.
#[derive(Debug)]
pub struct Configured<T> {
    value: RwLock<Option<Arc<T>>>,
    /// Said when the value is asked for before it is set, in a "Provider Not Configured" error.
    missing: &'static str,
}

impl<T> Configured<T> {
    /// An empty cell; `missing` explains to the user why nothing is configured yet and what to do.
    pub fn new(missing: &'static str) -> Self {
        Configured { value: RwLock::new(None), missing }
    }

    /// Stores the configured value (a later configuration replaces it).
    pub fn set(&self, value: T) {
        *self.value.write().expect("configured value lock") = Some(Arc::new(value));
    }

    /// The configured value, or a "Provider Not Configured" error saying why there is none.
    pub fn get(&self) -> Result<Arc<T>, Diagnostics> {
        self.value.read().expect("configured value lock").clone().ok_or_else(|| {
            let mut diagnostics = Diagnostics::new();
            diagnostics.error("Provider Not Configured", self.missing);
            diagnostics
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_until_set_then_shared() {
        let cell = Configured::new("not yet");
        let err = cell.get().unwrap_err();
        assert_eq!(err.0[0].summary, "Provider Not Configured");
        assert_eq!(err.0[0].detail, "not yet");
        cell.set(7);
        assert_eq!(*cell.get().unwrap(), 7);
    }
}
