//! (being written: see docs/sfu-design in the lead's notes)
