//! [`OrgRepository`](crate::OrgRepository) cases: one per `# Behavior` bullet.
//!
//! Every case works in its own random tenant with random domains and
//! asserts only on its own rows, so the repository may be one database
//! shared by all cases and by later runs. Time moves by passing a later
//! `now`, never by sleeping.

mod batches;
mod cancel_safety;
mod leases;
mod listing;
mod organizations;
mod store;
mod sweep;
mod tenants;
mod throughput;
mod trace;

pub use batches::*;
pub use cancel_safety::*;
pub use leases::*;
pub use listing::*;
pub use organizations::*;
pub use store::*;
pub use sweep::*;
pub use tenants::*;
pub use throughput::*;
pub use trace::*;
