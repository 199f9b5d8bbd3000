//! The fs driver.
