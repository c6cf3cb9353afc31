#include "names.h"

#include <string.h>

static bool ascii_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool object_name_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 63)
		return false;
	for (const char *p = s; *p; p++)
		if (!(ascii_alnum(*p) || *p == '-' || *p == '_' || *p == '.'))
			return false;
	return true;
}

bool env_key_valid(const char *k)
{
	size_t n = k ? strlen(k) : 0;
	if (n == 0 || n > 255 || (*k >= '0' && *k <= '9'))
		return false;
	for (const char *p = k; *p; p++)
		if (!(ascii_alnum(*p) || *p == '_'))
			return false;
	return true;
}
