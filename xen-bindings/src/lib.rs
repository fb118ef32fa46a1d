//! Safe access to libxl and xenstore.
