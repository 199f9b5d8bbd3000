//! The http driver.
