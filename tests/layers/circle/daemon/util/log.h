/* fixture: a leaf */
void log_msg(const char *m);
