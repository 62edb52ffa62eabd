//! The Auto Scaling and EC2 query APIs (built by the API work).
