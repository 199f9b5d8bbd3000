//! The mongodb driver.
