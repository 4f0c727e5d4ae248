//! Every refusal the config compiler makes, through `config::from_str`: the key path, a piece
//! of the message, and a line and column inside the file.
