//! The git driver.
