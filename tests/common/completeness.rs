//! Config for the data-completeness tests: one wastewater enterprise whose outlets
//! each report through a logger and have a COD limit.

/// An enterprise `E1` with outlets `(id, mn)`, password 123456, COD limited.
pub fn enterprise(outlets: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "id = \"E1\"\nname = \"测试污水厂\"\ndistrict = \"吴中区\"\nindustry = \"污水处理\"\n",
    );
    for (id, mn) in outlets {
        s.push_str(&format!(
            "\n[[outlets]]\nid = \"{id}\"\nname = \"排口 {id}\"\nkind = \"wastewater\"\n\
             hj212 = {{ mn = \"{mn}\", password = \"123456\" }}\n\n\
             [[outlets.limits]]\nfactor = \"w01018\"\nmax = 50.0\nbasis = \"day\"\n"
        ));
    }
    s
}
