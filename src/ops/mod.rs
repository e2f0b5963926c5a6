//! Operator commands: the firewall rules that send every port to the sensor, and the first-run
//! setup helper.
pub mod redirect;
pub mod setup;
