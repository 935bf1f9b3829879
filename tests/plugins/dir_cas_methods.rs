//! For the test plugins that are the dir-cas content store but for a few
//! methods: inside `impl Cas`, `dir_cas_methods!(check, stat, …)` defines
//! the named methods as the dir-cas driver's (`DirCasDriver`, in scope).

macro_rules! dir_cas_methods {
    (@one check) => {
        fn check() -> Result<()> {
            <DirCasDriver as Cas>::check()
        }
    };
    (@one stat) => {
        fn stat(d: &Digest) -> Result<Option<BlobInfo>> {
            <DirCasDriver as Cas>::stat(d)
        }
    };
    (@one open) => {
        fn open(d: &Digest) -> Result<Box<dyn BlobRead>> {
            <DirCasDriver as Cas>::open(d)
        }
    };
    (@one create) => {
        fn create(e: Option<&Digest>, s: Option<u64>) -> Result<Box<dyn BlobWrite>> {
            <DirCasDriver as Cas>::create(e, s)
        }
    };
    (@one delete) => {
        fn delete(d: &Digest) -> Result<()> {
            <DirCasDriver as Cas>::delete(d)
        }
    };
    (@one list_blobs) => {
        fn list_blobs(c: Option<String>, l: u32) -> Result<BlobPage> {
            <DirCasDriver as Cas>::list_blobs(c, l)
        }
    };
    (@one read_index) => {
        fn read_index() -> Result<IndexDoc> {
            <DirCasDriver as Cas>::read_index()
        }
    };
    (@one write_index) => {
        fn write_index(doc: Vec<u8>, p: IndexPrecondition) -> Result<String> {
            <DirCasDriver as Cas>::write_index(doc, p)
        }
    };
    ($($method:ident),* $(,)?) => {
        $(dir_cas_methods!(@one $method);)*
    };
}
