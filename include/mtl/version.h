/* libmtl — version macros, export macros and version queries.
 * This header is the single source of the library version; the build derives the SONAME
 * (libmtl.so.<MAJOR>) from MTL_VERSION_MAJOR. */
#ifndef MTL_VERSION_H
#define MTL_VERSION_H

#define MTL_VERSION_MAJOR 1
#define MTL_VERSION_MINOR 0
#define MTL_VERSION_PATCH 0
#define MTL_VERSION_STRING "1.0.0"
/* One integer that grows with every release: major*10000 + minor*100 + patch. */
#define MTL_VERSION_NUMBER (MTL_VERSION_MAJOR * 10000 + MTL_VERSION_MINOR * 100 + MTL_VERSION_PATCH)

#if defined(_WIN32)
#  if defined(MTL_BUILDING_LIBRARY)
#    define MTL_API __declspec(dllexport)
#  else
#    define MTL_API
#  endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#  define MTL_API __attribute__((visibility("default")))
#else
#  define MTL_API
#endif

#ifdef __cplusplus
#  define MTL_BEGIN_DECLS extern "C" {
#  define MTL_END_DECLS }
#else
#  define MTL_BEGIN_DECLS
#  define MTL_END_DECLS
#endif

MTL_BEGIN_DECLS

/* The version of the library loaded at run time, as MTL_VERSION_NUMBER.
 * Compare with MTL_VERSION_NUMBER to detect a header/library mismatch. Since 1.0. */
MTL_API int mtl_version(void);

/* The run-time library version as "MAJOR.MINOR.PATCH"; static storage, never NULL. Since 1.0. */
MTL_API const char *mtl_version_string(void);

MTL_END_DECLS

#endif
