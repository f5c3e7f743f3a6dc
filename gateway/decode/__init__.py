"""Pure decoders: sensor payload bytes in, values out. Tested on recorded bytes; no radio needed."""
